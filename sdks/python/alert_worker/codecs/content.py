"""What an alert's bytes are: the media types of the contract, told apart by their first bytes.

``Alert.content_type`` names one of these; a worker lists those it takes in
``WorkerDescription.accepts``. Telling them apart looks at the first bytes
only, so it costs nothing on a sidecar's hot path.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["JSON", "AVRO_CONFLUENT", "AVRO_OCF", "OCTET_STREAM", "OCF_MAGIC", "media_type", "sniff", "accepted"]

JSON = "application/json"
# Rubin's form: magic byte 0, a 4-byte big-endian schema id, a schemaless Avro body.
AVRO_CONFLUENT = "application/vnd.apache.avro+confluent"
# ZTF's form: an Avro Object Container File, its schema inside.
AVRO_OCF = "application/vnd.apache.avro.ocf"
# Bytes only the worker understands.
OCTET_STREAM = "application/octet-stream"

# Opens every Avro Object Container File: "Obj" and the format version 1 (Avro specification,
# "Object Container Files").
OCF_MAGIC = b"Obj\x01"


def media_type(content_type: str) -> str:
    """The bare media type of a content type: parameters dropped, lower case.

    ``"Application/JSON; charset=utf-8"`` gives ``"application/json"``.
    """
    return content_type.split(";", 1)[0].strip().lower()


def sniff(value: bytes | None) -> str:
    """The content type the first bytes make unambiguous, else ``OCTET_STREAM``.

    - ``Obj\\x01`` opens every Avro Object Container File (ZTF's form);
    - magic byte 0 followed by a 4-byte schema id and a body opens the
      Confluent wire format (Rubin's form); JSON and text never start with a
      zero byte;
    - ``{`` or ``[`` opens a JSON document.
    """
    if not value:
        return OCTET_STREAM
    if value.startswith(OCF_MAGIC):
        return AVRO_OCF
    if value[0] == 0 and len(value) > 5:
        return AVRO_CONFLUENT
    if value[:1] in (b"{", b"["):
        return JSON
    return OCTET_STREAM


def accepted(content_type: str, accepts: Sequence[str]) -> bool:
    """Whether a worker that lists ``accepts`` takes ``content_type``.

    Empty ``accepts``, or ``*/*`` in it, takes anything; ``application/*``
    takes every ``application/`` type.
    """
    if not accepts or "*/*" in accepts:
        return True
    major = content_type.split("/", 1)[0] + "/*"
    return content_type in accepts or major in accepts
