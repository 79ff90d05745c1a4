"""Items that take no bytes: a bound on what a few bytes of Avro can make a reader build.

An Avro array or map is a series of blocks, each a count and that many items.
An item whose type takes no bytes (``null``, a ``fixed`` of size 0, a record of
only such fields) costs nothing but its share of the count, so a count of a few
bytes can claim billions of them. fastavro reads every one: a five-byte body
claiming 2^27 nulls takes it 1 GB, and a larger count takes the process's memory
or its time without end. An Object Container File's block count does the same
for a record type that takes no bytes.

No Rubin or ZTF schema has such a type in an array, but a schema that does is
not wrong, and a damaged alert of it must be refused, not followed. So for the
schemas that can hold them (``holds_empty_items``, decided once per schema), the
body is walked first, building nothing, and refused (``AlertDecodeError``) when
its arrays and maps claim more items than ``item_budget`` allows: one per byte of
the body, every item of any other type taking a byte at least, and
``ZERO_SIZE_ITEMS`` more. The sidecar's compiled reader applies the same bound.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import AlertDecodeError

__all__ = ["ZERO_SIZE_ITEMS", "holds_empty_items", "item_budget", "check_items"]

# The items of a type that takes no bytes one body may hold beyond one item per byte.
ZERO_SIZE_ITEMS = 65536

_SIZES = {"boolean": 1, "float": 4, "double": 8}
_VARINTS = frozenset({"int", "long", "enum"})
_LENGTHS = frozenset({"bytes", "string"})


def item_budget(body_length: int) -> int:
    """How many items of arrays and maps a body of ``body_length`` bytes may hold in all."""
    return body_length + ZERO_SIZE_ITEMS


def _named(schema: Any) -> dict[str, Any]:
    return schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}


def _takes_no_bytes(node: Any, named: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """Whether every value of a type (as fastavro parses it) is written in no bytes."""
    if isinstance(node, str):
        if node == "null":
            return True
        if node in named and node not in seen:
            return _takes_no_bytes(named[node], named, seen | {node})
        return False
    if isinstance(node, list):  # a union writes its branch's index
        return False
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    if kind == "fixed":
        return node.get("size") == 0
    if kind in ("record", "error"):
        name = node.get("name")
        seen = seen | {name} if isinstance(name, str) else seen
        return all(_takes_no_bytes(field.get("type"), named, seen) for field in node.get("fields", []))
    if isinstance(kind, (str, dict, list)) and kind not in ("array", "map", "enum"):
        return _takes_no_bytes(kind, named, seen)  # a logical type, or a type nested as {"type": ...}
    return False


def holds_empty_items(schema: Any) -> bool:
    """Whether a schema (as fastavro parses it) has an array of items that take no bytes, or is such a type.

    A map's entries each write a key, so only arrays, and the schema's own
    type (an Object Container File's blocks count its records), are asked.
    """
    named = _named(schema)
    if _takes_no_bytes(schema, named):
        return True
    stack = [schema, *named.values()]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind == "array":
                if _takes_no_bytes(node.get("items"), named):
                    return True
                stack.append(node.get("items"))
            elif kind == "map":
                stack.append(node.get("values"))
            elif kind in ("record", "error"):
                stack.extend(field.get("type") for field in node.get("fields", []))
            elif isinstance(kind, (dict, list)):
                stack.append(kind)
    return False


class _Ends(Exception):
    """The body is not a value of the schema: left for fastavro to say so in its own words."""


class _Walk:
    """Skips over values of a schema in a body, counting the items of its arrays and maps."""

    def __init__(self, data: bytes | memoryview, pos: int, named: dict[str, Any]) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)
        self.named = named
        self.left = item_budget(self.end - pos)

    def varint(self) -> int:
        n = shift = 0
        while True:
            if self.pos >= self.end or shift > 63:
                raise _Ends
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return (n >> 1) ^ -(n & 1)

    def advance(self, n: int) -> None:
        if n < 0 or n > self.end - self.pos:
            raise _Ends
        self.pos += n

    def items(self) -> int:
        """The count of the next block, counted against the body's budget; 0 ends the array or map."""
        n = self.varint()
        if n < 0:
            n = -n
            self.varint()  # the block's size in bytes
        if n > self.left:
            raise AlertDecodeError(
                f"the Avro body claims a block of {n} items at byte {self.pos}, more than a body of "
                f"{self.end} bytes can hold (one item a byte and {ZERO_SIZE_ITEMS} of a type "
                f"that takes no bytes): the bytes are damaged")
        self.left -= n
        return n

    def skip(self, node: Any) -> None:
        if isinstance(node, str):
            if node == "null":
                return
            if node in _SIZES:
                self.advance(_SIZES[node])
            elif node in _VARINTS:
                self.varint()
            elif node in _LENGTHS:
                self.advance(self.varint())
            elif node in self.named:
                self.skip(self.named[node])
            else:
                raise _Ends
            return
        if isinstance(node, list):
            branch = self.varint()
            if not -len(node) <= branch < len(node):  # fastavro takes a negative branch from the end
                raise _Ends
            self.skip(node[branch])
            return
        kind = node.get("type")
        if kind in ("record", "error"):
            for field in node.get("fields", []):
                self.skip(field.get("type"))
        elif kind == "enum":
            self.varint()
        elif kind == "fixed":
            self.advance(node.get("size", 0))
        elif kind == "array":
            while n := self.items():
                for _ in range(n):
                    self.skip(node.get("items"))
        elif kind == "map":
            while n := self.items():
                for _ in range(n):
                    self.advance(self.varint())
                    self.skip(node.get("values"))
        else:
            self.skip(kind)  # a logical type, or a type nested as {"type": ...}


def check_items(data: bytes | memoryview, schema: Any, pos: int = 0) -> None:
    """Refuse a body whose arrays and maps claim more items than its length allows (see the module).

    ``schema`` as fastavro parses it. Bytes that are not a value of the schema
    for another reason are left for the reader to refuse in its own words.
    """
    walk = _Walk(data, pos, _named(schema))
    try:
        walk.skip(schema)
    except (_Ends, RecursionError):
        pass
