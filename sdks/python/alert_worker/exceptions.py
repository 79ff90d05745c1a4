"""Exceptions of the worker SDK.

``AlertWorkerError`` is the root of everything this package raises on purpose.
Two kinds hang below it:

- ``Retry`` and ``DeadLetter`` are how a worker function states a verdict by
  raising: the SDK turns them into VERDICT_RETRY and VERDICT_DEAD_LETTER
  results, with the exception's message as the error.
- The others are errors a user can cause (a worker defined wrongly, an alert
  that cannot be decoded, a package that is missing); their message says what
  was wrong and what to do.
"""

from __future__ import annotations


class AlertWorkerError(Exception):
    """Root of the errors this package raises; ``str(err)`` is the whole message."""


class Retry(AlertWorkerError):
    """Raise to answer RETRY: the alert may succeed later (a service down, a timeout).

    The sidecar sends the alert again after a backoff, up to its retry limit,
    then dead-letters it with this message.
    """


class DeadLetter(AlertWorkerError):
    """Raise to answer DEAD_LETTER: the alert can never be processed (bad data).

    The sidecar writes the original alert to the dead-letter buffer with this
    message as the reason, and moves on.
    """


class WorkerDefinitionError(AlertWorkerError, TypeError):
    """A worker is defined wrongly (no process method, a bad batch size, ...)."""


class InvalidReturn(AlertWorkerError, TypeError):
    """A worker returned something that is not a verdict (None, a str, a number, ...).

    The alert is answered RETRY with this message: the code needs fixing, and
    the alert is kept until then (up to the sidecar's retry limit).
    """


class AlertDecodeError(AlertWorkerError, ValueError):
    """An alert's bytes cannot be decoded as its content type says.

    Raised by ``Alert.json()``, ``Alert.avro()`` and ``Alert.decode()``. When it
    escapes a worker function the alert is answered DEAD_LETTER: the same
    bytes will never decode on a later attempt.
    """


class UnknownSchemaError(AlertDecodeError):
    """A Confluent wire-format alert names a schema id the resolver does not know."""


class CutoutError(AlertDecodeError):
    """A cutout stamp cannot be read as an image (not FITS, truncated, no 2-D image).

    Raised by ``alert_worker.cutouts``. A subclass of ``AlertDecodeError``: when
    it escapes a worker function the alert is answered DEAD_LETTER, since the
    same stamp never reads later. Catch it to process the alert without its
    picture.
    """


class MissingDependencyError(AlertWorkerError, ImportError):
    """An optional package that a feature needs is not installed.

    When it escapes a worker function the alert is answered RETRY (installing
    the package fixes it; the alert itself is fine).
    """


class ServeError(AlertWorkerError):
    """A worker cannot be served: a bad port, a port in use, not a Worker."""
