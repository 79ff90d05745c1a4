"""Decoding Confluent-framed Avro alerts with only the fields a worker asks for.

fastavro builds every field of an alert before the JSON form keeps the few a
filter named: for an LSST-sized Rubin alert that is 4,000 values to keep eight.
This decoder is compiled once per pair of writer schema and ``fields``
(``reader_for``) into nodes (``_avro_projection``, built from Cython by
``pip install``) that read what is kept and skip the rest: a skipped cutout is a
jump over its length, a skipped previous source its fields' skips.

Its values are fastavro's for the same bytes (``alert_worker.codecs.project`` of
fastavro's record), checked by ``tests/unit/test_avro_projection.py`` on random
records of random schemas and on Rubin's. Two differences, both on bytes that are
not a valid record: a string the projection skips is not checked to be UTF-8,
and an enum index or union branch below zero is an error (fastavro takes it from
the end of the symbols or branches). Recursive schemas are left to fastavro (``reader_for`` gives None).
"""

from __future__ import annotations

import threading
from typing import Any

from alert_worker.codecs import CONFLUENT_HEADER_SIZE, projection_tree
from alert_worker.codecs.schema_names import is_recursive
from alert_worker.exceptions import AlertDecodeError

try:
    from alert_sidecar.formats import _avro_projection as _c
except ImportError:  # built without a C compiler: the stage decodes with fastavro alone
    _c = None

try:
    from fastavro.read import LOGICAL_READERS
except ImportError:  # pragma: no cover - fastavro's layout
    LOGICAL_READERS = {}

__all__ = ["AVAILABLE", "decode_confluent_projected", "reader_for"]

AVAILABLE = _c is not None

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _primitive(name: str) -> Any:
    c = _c
    return {"null": c.NullNode, "boolean": c.BooleanNode, "int": c.LongNode, "long": c.LongNode,
            "float": c.FloatNode, "double": c.DoubleNode, "bytes": c.BytesNode, "string": c.StringNode}[name]()


class _Compiler:
    """Compiles one parsed writer schema (fastavro's ``parse_schema`` form) against one projection tree."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.done: dict[tuple[int, int], Any] = {}  # (id of the schema node, id of the tree) -> its node

    def node(self, schema: Any, tree: dict[str, Any] | None) -> Any:
        key = (id(schema), id(tree))
        node = self.done.get(key)
        if node is None:
            node = self.done[key] = self._node(schema, tree)
        return node

    def _node(self, schema: Any, tree: dict[str, Any] | None) -> Any:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _primitive(schema)
            if schema not in self.named:
                raise ValueError(f"the schema names a type it does not define: {schema!r}")
            return self.node(self.named[schema], tree)
        if isinstance(schema, list):
            return _c.UnionNode([self.node(branch, tree) for branch in schema])
        if not isinstance(schema, dict):
            raise ValueError(f"not an Avro schema: {schema!r}")
        kind = schema["type"]
        if isinstance(kind, (list, dict)):  # {"type": {"type": "array", ...}}
            return self.node(kind, tree)
        logical = schema.get("logicalType")
        if kind in ("record", "error"):
            inner = self._record(schema, tree)
        elif kind == "array":
            inner = _c.ArrayNode(self.node(schema["items"], tree))
        elif kind == "map":
            values = self.node(schema["values"], None)
            wanted = None if tree is None else {key: self.node(schema["values"], sub) for key, sub in tree.items()}
            inner = _c.MapNode(values, wanted)
        elif kind == "enum":
            inner = _c.EnumNode(schema["symbols"])
        elif kind == "fixed":
            inner = _c.FixedNode(int(schema["size"]))
        elif kind in _PRIMITIVES:
            inner = _primitive(kind)
        else:
            return self.node(kind, tree)  # a named type given as {"type": "its.name"}
        convert = LOGICAL_READERS.get(f"{kind}-{logical}") if logical else None
        return _c.ConvertedNode(inner, convert, schema) if convert is not None else inner

    def _record(self, schema: dict[str, Any], tree: dict[str, Any] | None) -> Any:
        fields = schema["fields"]
        names = [f["name"] for f in fields]
        if tree is None:
            return _c.RecordNode([self.node(f["type"], None) for f in fields], list(range(len(fields))), names)
        out = [name for name in tree if name in names]  # the projection's order, as project() keeps it
        place = {name: i for i, name in enumerate(out)}
        nodes = [self.node(f["type"], tree[f["name"]] if f["name"] in place else None) for f in fields]
        return _c.RecordNode(nodes, [place.get(name, -1) for name in names], out)


# Readers compiled per schema (by identity: a schema source answers an id with
# the same parsed schema each time; each entry holds its schema, so that its id
# is not another's) and fields. A stage has a few schemas and one set of fields.
_MAX_KEPT = 64
_readers: dict[tuple[int, tuple[str, ...] | None], tuple[Any, Any]] = {}
_lock = threading.Lock()


def reader_for(schema: Any, fields: tuple[str, ...] | None) -> Any:
    """The compiled reader of a parsed writer schema for ``fields`` (None: all), or None when there is none.

    None when the extension is not built, when the schema is recursive (its
    values nest without a bound the compiled nodes would follow) and when it
    nests deeper than Python's stack lets it be compiled, or has a form the
    compiler does not know: fastavro then decodes it, and says what it makes
    of it.
    """
    if _c is None:
        return None
    key = (id(schema), fields)
    kept = _readers.get(key)
    if kept is not None and kept[0] is schema:
        return kept[1]
    node = None
    if not is_recursive(schema):
        named = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
        try:
            node = _Compiler(named).node(schema, projection_tree(fields) if fields else None)
        except RecursionError:
            node = None
        except (ValueError, KeyError, TypeError):  # a schema fastavro parsed that the compiler does not follow
            node = None
    with _lock:
        if len(_readers) >= _MAX_KEPT:
            del _readers[next(iter(_readers))]
        _readers[key] = (schema, node)
    return node


def decode_confluent_projected(data: bytes, schema_id: int, reader: Any) -> Any:
    """The projected record of Confluent-framed ``data`` (its header already read) with ``reader``.

    Raises ``AlertDecodeError`` as ``alert_worker.codecs.decode_confluent`` does,
    for a body that does not decode and for one with bytes left after its record.
    """
    try:
        record, end = _c.read_body(reader, bytes(data), CONFLUENT_HEADER_SIZE)
    except (_c.AvroBodyError, UnicodeDecodeError, ValueError, OverflowError, TypeError) as exc:
        raise AlertDecodeError(f"the Avro body does not decode with schema id {schema_id}: "
                               f"{type(exc).__name__}: {exc}") from exc
    left = len(data) - end
    if left:
        raise AlertDecodeError(
            f"the Avro body leaves {left} bytes after a whole record of schema id {schema_id}: "
            f"the record was not written with that schema")
    return record
