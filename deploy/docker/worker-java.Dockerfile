# The Java SDK's image, alert-worker-java:0.1.0: the sidecar's image with a Java
# 17 runtime, the SDK's jars and the Java examples. From the repository root,
# after the sidecar's image:
#   docker build -f deploy/docker/worker-java.Dockerfile -t alert-worker-java:0.1.0 .
# Your worker: FROM alert-worker-java:0.1.0, COPY your jar (and its target/lib) below /app.
ARG SIDECAR_IMAGE=alert-sidecar:0.1.0

# The SDK and the examples, built as `make java` builds them (the contract's
# classes are generated from proto/ at build time).
FROM maven:3.9-eclipse-temurin-17 AS build
COPY proto /src/proto
COPY sdks/java /src/sdks/java
COPY examples/java /src/examples/java
WORKDIR /src
RUN mvn -B --no-transfer-progress -q -f sdks/java/pom.xml install -DskipTests \
    && mvn -B --no-transfer-progress -q -f examples/java/pom.xml package -DskipTests

FROM ${SIDECAR_IMAGE}
USER root
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
# The SDK as Maven installed it, for builds FROM this image that run Maven offline.
COPY --from=build /root/.m2/repository/org/alertsidecar /opt/alert-worker/m2/org/alertsidecar
# Each example's jar beside the target/lib its manifest names.
COPY --from=build /src/examples/java/passthrough/target/passthrough.jar /app/examples/java/passthrough/target/
COPY --from=build /src/examples/java/passthrough/target/lib /app/examples/java/passthrough/target/lib
COPY --from=build /src/examples/java/crossmatch/target/crossmatch.jar /app/examples/java/crossmatch/target/
COPY --from=build /src/examples/java/crossmatch/target/lib /app/examples/java/crossmatch/target/lib
USER 10001
ENV ALERT_WORKER_PORT=50051
EXPOSE 50051
