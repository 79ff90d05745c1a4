"""The SDK's version, reported to the sidecar in WorkerDescription.sdk."""

__version__ = "0.1.0"
