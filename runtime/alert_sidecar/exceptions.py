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
