"""What an alert's bytes are, named as the media types of the contract, and the --in-format names.

The media types, telling them apart by their first bytes (``sniff``) and what
a worker's ``accepts`` takes (``accepted``) are the SDK's
(``alert_worker.codecs``), so that the sidecar and its workers read them
alike. The sidecar does not decode alerts here; it only labels them so that a
worker knows what it receives (Alert.content_type).
"""

from __future__ import annotations

from alert_worker.codecs import AVRO_CONFLUENT, AVRO_OCF, JSON, accepted, sniff
from alert_worker.codecs import OCTET_STREAM as RAW

from alert_sidecar.exceptions import ConfigError

__all__ = ["RAW", "JSON", "AVRO_CONFLUENT", "AVRO_OCF", "FORMATS", "AUTO", "sniff", "accepted", "content_type_for"]

# --in-format and ?format= names, as a user types them.
FORMATS = {"raw": RAW, "json": JSON, "avro-confluent": AVRO_CONFLUENT, "avro-ocf": AVRO_OCF}
AUTO = "auto"


def content_type_for(format_name: str) -> str | None:
    """The fixed content type of a --in-format, or None for auto (sniff each alert)."""
    if format_name == AUTO:
        return None
    try:
        return FORMATS[format_name]
    except KeyError:
        names = ", ".join([AUTO, *FORMATS])
        raise ConfigError(f"--in-format {format_name!r} is not a format: use one of {names}") from None
