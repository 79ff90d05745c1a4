"""The formats alerts travel in, as pure functions: bytes in, Python values out, and back.

Nothing here knows gRPC or Kafka. ``Alert.json()``, ``Alert.avro()`` and
``Alert.decode()`` call these functions; the sidecar decodes and writes alerts
with them too, so a worker and its sidecar agree on every byte.

The formats, named by the media types of the contract (``Alert.content_type``,
``content.py``):

- ``application/json``: a JSON document. Integers stay exact Python ints, so
  64-bit alert ids (``diaSourceId``, ``candid``) survive a round trip.
- ``application/vnd.apache.avro+confluent``: the Confluent wire format, Rubin's
  form (``avro.py``). The writer schema comes from a ``SchemaResolver``
  (``resolvers.py``); the default one is Rubin's registry shipped in
  ``lsst-alert-packet`` (``rubin.py``).
- ``application/vnd.apache.avro.ocf``: an Avro Object Container File with its
  schema inside, ZTF's form (``avro.py``): one record, the alert.

A sidecar either passes an Avro alert as it is (with the writer schemas of the
batch's Confluent-framed alerts in ``AlertBatch.schemas``, read here by
``BatchSchemaResolver``) or decodes it for the worker into the contract's JSON
form (``json_form.py``: ``application/json`` with ``Alert.source_content_type``
naming the Avro form), projected to the worker's ``fields``. The two decoded
forms hold the same values except where JSON has no type for them: bytes
(cutouts) are base64 strings, timestamps ISO 8601 strings, NaN and infinities
null. ``b64bytes`` and ``as_datetime`` read such a field the same way from
either form. ``schema_names.py`` walks the named types of Avro schemas, so that
a schema sent as text stands alone, and tells recursive schemas apart.
"""

from . import avro, content, json_form, resolvers, rubin, schema_names
from .avro import (
    CONFLUENT_HEADER_SIZE,
    confluent_header,
    decode_confluent,
    decode_ocf,
    encode_confluent,
    schema_id_of,
    split_confluent,
)
from .content import AVRO_CONFLUENT, AVRO_OCF, JSON, OCF_MAGIC, OCTET_STREAM, accepted, media_type, sniff
from .json_form import (
    as_datetime,
    b64bytes,
    decode_json,
    encode_json,
    encode_json_form,
    project,
    projection_tree,
)
from .resolvers import BatchSchemaResolver, MappingSchemaResolver, SchemaResolver, parse_writer_schema
from .rubin import RubinSchemaResolver, rubin_resolver, rubin_schema_files, rubin_schema_id
from .schema_names import inline_named_types, is_recursive, named_types, plain_schema

__all__ = [*content.__all__, *json_form.__all__, *avro.__all__, *resolvers.__all__, *rubin.__all__,
           *schema_names.__all__]
