# The R SDK's image, alert-worker-r:0.1.0: the sidecar's image with R, the
# packages the SDK needs from Debian (as sdks/r/r.mk installs them) and the SDK,
# and the R examples. From the repository root, after the sidecar's image:
#   docker build -f deploy/docker/worker-r.Dockerfile -t alert-worker-r:0.1.0 .
# Your worker: FROM alert-worker-r:0.1.0, COPY your script below /app.
ARG SIDECAR_IMAGE=alert-sidecar:0.1.0
FROM ${SIDECAR_IMAGE}

USER root
RUN apt-get update && apt-get install -y --no-install-recommends r-base-core r-cran-rprotobuf r-cran-httpuv \
        r-cran-jsonlite \
    && rm -rf /var/lib/apt/lists/*
# The package ships the contract as a link to proto/: both are copied so that it resolves.
COPY proto /src/proto
COPY sdks/r /src/sdks/r
RUN R CMD INSTALL --no-multiarch /src/sdks/r && rm -rf /src
COPY examples/r /app/examples/r
USER 10001
# R workers speak Connect (HTTP/1.1) on this port.
ENV ALERT_WORKER_PORT=50051
EXPOSE 50051
