# The Python SDK's image, alert-worker-python:0.1.0: the sidecar's image (which
# holds the SDK, alert_worker) and the Python examples. From the repository root,
# after the sidecar's image:
#   docker build -f deploy/docker/worker-python.Dockerfile -t alert-worker-python:0.1.0 .
# Your worker: FROM alert-worker-python:0.1.0, COPY your code below /app.
ARG SIDECAR_IMAGE=alert-sidecar:0.1.0
FROM ${SIDECAR_IMAGE}

# The SDK's extra "cutouts" (astropy reads the FITS stamps, Pillow writes PNG),
# which the thumbnails example needs; the versions are sdks/python/pyproject.toml's.
USER root
RUN pip install --no-cache-dir "astropy>=6" "numpy>=1.24" "pillow>=10"
USER 10001
COPY examples/python /app/examples/python
# Where the worker listens; the sidecar beside it calls localhost on this port.
ENV ALERT_WORKER_PORT=50051
EXPOSE 50051
