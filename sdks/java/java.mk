# The Java SDK (sdks/java) and the Java examples (examples/java), for the top-level
# Makefile: `include sdks/java/java.mk`. Paths are relative to the repository root.
# Needs Java 17 and Maven; Maven fetches gRPC, protobuf, protoc and Avro from
# Maven Central into ~/.m2 on the first build.

MVN ?= mvn
# Batch mode, no download progress: one line per problem in CI logs.
MVN_FLAGS ?= -B --no-transfer-progress

.PHONY: java java-test

# Build and install the SDK (org.alertsidecar:alert-worker, its contract classes
# generated from proto/), the conformance worker and the examples; tests skipped.
java:
	$(MVN) $(MVN_FLAGS) -q -f sdks/java/pom.xml install -DskipTests
	$(MVN) $(MVN_FLAGS) -q -f examples/java/pom.xml package -DskipTests

# The JUnit tests of the SDK, then of the examples (built on the SDK just installed).
# Not quiet, so that Surefire's "Tests run: ..." lines show.
java-test:
	$(MVN) $(MVN_FLAGS) -f sdks/java/pom.xml install
	$(MVN) $(MVN_FLAGS) -f examples/java/pom.xml package
