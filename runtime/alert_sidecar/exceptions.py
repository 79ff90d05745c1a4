"""Errors of the sidecar.

``SidecarError`` and its subclasses are errors a user can cause or fix (a bad
flag, a broker that is down, a worker that is not listening). The command line
prints their message on one line, without a traceback, and exits with
``exit_code``. Any other exception is a bug of the program and stays loud.
"""


class SidecarError(Exception):
    """Root of the errors a user can cause; ``str(err)`` is the whole message."""

    exit_code = 1


class ConfigError(SidecarError):
    """A flag, environment variable, config file or buffer URI is wrong."""

    exit_code = 2


class KafkaUnreachable(SidecarError):
    """A Kafka cluster named by a buffer cannot be reached, or a topic is missing."""

    exit_code = 3


class WorkerError(SidecarError):
    """A worker cannot be reached, is incompatible, or broke the contract."""

    exit_code = 4


class OutputFailed(SidecarError):
    """An output or dead-letter record could not be written: nothing is committed past it."""

    exit_code = 5


class LocalKafkaError(SidecarError):
    """The local development cluster cannot be fetched, started, found or stopped."""


class UnknownSchemaError(SidecarError):
    """No source knows a schema id: permanent for the alerts that carry it (dead-lettered)."""

    def __init__(self, schema_id: int, where: str, detail: str | None = None) -> None:
        self.schema_id = schema_id
        self.where = where
        self.detail = detail
        because = f" ({detail})" if detail else ""
        super().__init__(
            f"schema id {schema_id} is unknown to {where}{because}: register the schema, add it to a "
            f"--schema-dir as {schema_id}.avsc, or check that the alert is Confluent-framed Avro")


class InvalidSchemaError(UnknownSchemaError):
    """A source knows the id, but what it holds is not a usable Avro schema: permanent too."""

    def __init__(self, schema_id: int, where: str, detail: str) -> None:
        self.schema_id = schema_id
        self.where = where
        self.detail = detail
        SidecarError.__init__(self, f"schema id {schema_id} of {where} is not a usable Avro schema: {detail}")


class SchemaRegistryUnavailable(SidecarError):
    """A schema registry cannot answer now: transient (the sidecar pauses and retries)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"schema registry {url} is unavailable: {reason}; check that it runs and that "
            f"--schema-registry names it (alerts wait, none is lost)")


class SchemaRejected(SidecarError):
    """A registry refused to register a schema (invalid, or incompatible with the subject's versions)."""

    exit_code = 2  # a user's schema or subject is wrong, as for a bad flag


class DecodeError(SidecarError):
    """The bytes are not what their format says: permanent for that alert."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(SidecarError):
    """An output does not fit its buffer's schema: permanent for that alert."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
