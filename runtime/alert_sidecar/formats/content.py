"""What an alert's bytes are, named as the media types of the contract.

The sidecar does not decode alerts here; it only labels them so that a worker
knows what it receives (Alert.content_type). Labelling looks at the first bytes
only, so it costs nothing on the hot path.
"""

from __future__ import annotations

from alert_sidecar.exceptions import ConfigError

RAW = "application/octet-stream"
JSON = "application/json"
AVRO_CONFLUENT = "application/vnd.apache.avro+confluent"
AVRO_OCF = "application/vnd.apache.avro.ocf"

# --in-format names, as a user types them.
FORMATS = {"raw": RAW, "json": JSON, "avro-confluent": AVRO_CONFLUENT, "avro-ocf": AVRO_OCF}
AUTO = "auto"

_OCF_MAGIC = b"Obj\x01"  # Avro Object Container File header (Avro spec)


def sniff(value: bytes | None) -> str:
    """The content type the bytes make unambiguous, else raw.

    - ``Obj\\x01`` opens every Avro Object Container File (ZTF's form);
    - magic byte 0 followed by a 4-byte schema id opens the Confluent wire
      format (Rubin's form); JSON and text never start with a zero byte;
    - ``{`` or ``[`` opens a JSON document.
    """
    if not value:
        return RAW
    if value.startswith(_OCF_MAGIC):
        return AVRO_OCF
    if value[0] == 0 and len(value) > 5:
        return AVRO_CONFLUENT
    if value[:1] in (b"{", b"["):
        return JSON
    return RAW


def content_type_for(format_name: str) -> str | None:
    """The fixed content type of a --in-format, or None for auto (sniff each alert)."""
    if format_name == AUTO:
        return None
    try:
        return FORMATS[format_name]
    except KeyError:
        names = ", ".join([AUTO, *FORMATS])
        raise ConfigError(f"--in-format {format_name!r} is not a format: use one of {names}") from None


def accepted(content_type: str, accepts: list[str]) -> bool:
    """Whether a worker that listed ``accepts`` takes ``content_type`` (empty or */* means any)."""
    if not accepts or "*/*" in accepts:
        return True
    major = content_type.split("/", 1)[0] + "/*"
    return content_type in accepts or major in accepts
