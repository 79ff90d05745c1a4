"""Avro named types: what a schema defines, writing referenced types in, fastavro's keys out, recursion.

Schemas travel as text that must stand alone (``AlertBatch.schemas``, a
registry's answer, a schema folder's id file), while Avro lets a schema refer
by full name to record, enum and fixed types defined elsewhere: in the folder's
other files (ZTF's schema folder), in referenced subjects (Confluent schema
references), earlier in the same schema. Full names and namespaces follow the
Avro specification ("Names").
"""

from __future__ import annotations

from typing import Any

__all__ = ["named_types", "inline_named_types", "plain_schema", "is_recursive"]

# Avro's primitive type names: never references to a named type.
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _is_named(kind: Any) -> bool:
    """Whether a "type" defines a named type; a "type" may be any JSON in a text that is not a schema."""
    return isinstance(kind, str) and kind in _NAMED_KINDS


def _fields(record: dict) -> list:
    """A record's fields, or none where "fields" is not a list (fastavro then says what is wrong)."""
    fields = record.get("fields")
    return fields if isinstance(fields, list) else []


def _namespace_of(definition: dict, enclosing: str | None) -> str | None:
    """The namespace a named type's definition sets for itself and the types inside it (Avro spec)."""
    name = definition.get("name", "")
    if "." in name:
        return name.rsplit(".", 1)[0]
    return definition.get("namespace", enclosing) or None


def named_types(schema: Any, namespace: str | None = None, found: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named type (record, enum, fixed) a schema defines, by full name.

    Each definition is given its namespace explicitly, so that it means the
    same when written in somewhere else.
    """
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, namespace, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if _is_named(kind) and isinstance(schema.get("name"), str):
            own = _namespace_of(schema, namespace)
            full = _fullname(schema["name"], own)
            definition = dict(schema)
            if "." not in schema["name"] and own:
                definition["namespace"] = own
            found.setdefault(full, definition)
            for field in _fields(schema) if kind in ("record", "error") else ():
                if isinstance(field, dict):
                    named_types(field.get("type"), own, found)
        elif kind == "array":
            named_types(schema.get("items"), namespace, found)
        elif kind == "map":
            named_types(schema.get("values"), namespace, found)
        elif isinstance(kind, (dict, list)):
            named_types(kind, namespace, found)
    return found


def inline_named_types(schema: Any, named: dict[str, Any]) -> Any:
    """``schema`` with each reference to a type of ``named`` it does not define written in at first use.

    A reference to a name neither defined nor in ``named`` is left as it is
    (fastavro then says which type is unknown).
    """
    defined: set[str] = set()

    def walk(node: Any, namespace: str | None) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            candidates = [_fullname(node, namespace), node]
            for full in candidates:
                if full in defined:
                    return node
            for full in candidates:
                if full in named:
                    return walk(named[full], namespace)
            return node
        if isinstance(node, list):
            return [walk(branch, namespace) for branch in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        out = dict(node)
        if _is_named(kind) and isinstance(node.get("name"), str):
            own = _namespace_of(node, namespace)
            defined.add(_fullname(node["name"], own))
            fields = node.get("fields", [])
            if kind in ("record", "error") and isinstance(fields, list):  # else left for fastavro to refuse
                out["fields"] = [
                    {**field, "type": walk(field.get("type"), own)} if isinstance(field, dict) else field
                    for field in fields
                ]
        elif kind == "array":
            out["items"] = walk(node.get("items"), namespace)
        elif kind == "map":
            out["values"] = walk(node.get("values"), namespace)
        elif isinstance(kind, (str, dict, list)):
            out["type"] = walk(kind, namespace)
        return out

    return walk(schema, None)


def is_recursive(schema: Any) -> bool:
    """Whether a named type of ``schema`` contains itself, directly or through other named types.

    A record of such a type (a linked list, a tree) may nest as deep as its
    bytes go, where a record of any other schema nests no deeper than the
    schema. Takes a schema as fastavro parses it (full names; the types it
    was given to refer to under ``"__named_schemas"``) or as written, and any
    JSON: what is not a schema has no named type. Walks the schema with a stack
    of its own, so a schema nested as deep as its JSON reader allows is
    answered too.
    """
    uses: dict[str, set[tuple[str, str | None]]] = {}  # each type -> the names its definition refers to
    stack: list[tuple[Any, str | None, str | None]] = [(schema, None, None)]  # (node, namespace, type it is in)
    if isinstance(schema, dict) and isinstance(schema.get("__named_schemas"), dict):
        stack.extend((definition, None, None) for definition in schema["__named_schemas"].values())
    while stack:
        node, namespace, owner = stack.pop()
        if isinstance(node, str):
            if owner is not None and node not in _PRIMITIVES:
                uses[owner].add((node, namespace))
        elif isinstance(node, list):
            stack.extend((branch, namespace, owner) for branch in node)
        elif isinstance(node, dict):
            kind = node.get("type")
            if _is_named(kind) and isinstance(node.get("name"), str):
                own = _namespace_of(node, namespace)
                full = _fullname(node["name"], own)
                if owner is not None:
                    uses[owner].add((full, None))
                uses.setdefault(full, set())
                for field in _fields(node) if kind in ("record", "error") else ():
                    if isinstance(field, dict):
                        stack.append((field.get("type"), own, full))
            elif kind == "array":
                stack.append((node.get("items"), namespace, owner))
            elif kind == "map":
                stack.append((node.get("values"), namespace, owner))
            elif not _is_named(kind):  # a reference ("type": "ns.Name"), a primitive, a union, a nested schema
                stack.append((kind, namespace, owner))
    # A reference means the type of its full name if the schema defines one, else the name as written.
    graph = {name: {full if full in uses else ref for ref, ns in refs for full in (_fullname(ref, ns),)}
             for name, refs in uses.items()}
    return _has_cycle(graph)


def _has_cycle(graph: dict[str, set[str]]) -> bool:
    """Whether following the edges of ``graph`` from some name leads back to it (depth first, without recursion)."""
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        path = {start}
        walk = [(start, iter(graph[start]))]
        while walk:
            name, edges = walk[-1]
            for target in edges:
                if target in path:
                    return True
                if target in graph and target not in done:
                    path.add(target)
                    walk.append((target, iter(graph[target])))
                    break
            else:
                walk.pop()
                path.discard(name)
                done.add(name)
    return False


def plain_schema(schema: Any) -> Any:
    """A fastavro-parsed schema back to plain Avro JSON: fastavro's own bookkeeping keys dropped."""
    if isinstance(schema, dict):
        return {k: plain_schema(v) for k, v in schema.items() if k not in ("__fastavro_parsed", "__named_schemas")}
    if isinstance(schema, list):
        return [plain_schema(v) for v in schema]
    return schema
