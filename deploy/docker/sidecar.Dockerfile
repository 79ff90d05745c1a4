# The sidecar, alert-sidecar:0.1.0, with the Python SDK it depends on. From the repository root:
#   docker build -f deploy/docker/sidecar.Dockerfile -t alert-sidecar:0.1.0 .
# The SDK images (worker-*.Dockerfile) are built on this one.
FROM python:3.12-slim-bookworm

# The SDK first: the sidecar depends on alert-worker==0.1.0, which is not on PyPI.
COPY sdks/python /src/sdks/python
COPY pyproject.toml setup.py README.md /src/
COPY runtime /src/runtime
# gcc for the install only: it compiles the decoder that reads only the fields a
# worker asks for (setup.py); without it the sidecar would decode with fastavro alone.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir /src/sdks/python && pip install --no-cache-dir /src \
    && python -c "from alert_sidecar.formats import avro_projection; assert avro_projection.AVAILABLE" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* /src

# Worker commands and relative paths of a pipeline file are read from here
# (export's --workdir); the SDK images put the examples below it.
WORKDIR /app
COPY examples/pipelines /app/examples/pipelines
# Not root: the sidecar needs no privilege, and a worker it starts inherits its user.
USER 10001
# The metrics port: /metrics, /ready, /live.
EXPOSE 9100
ENTRYPOINT ["alert-sidecar"]
