"""YAML as the exports write it: keys in the order built, no line folding, no anchors."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """No ``&id001`` anchors where two objects share a dict (the labels): each object reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=1_000_000)


def dump_all(objects: list[dict[str, Any]]) -> str:
    """Objects as one YAML stream, in order."""
    return "".join("---\n" + to_yaml(obj) for obj in objects)
