"""One builder for ``export k8s`` and ``export helm``: each setting a user may change is asked of a ``Values``.

``Values.get(path, default, doc)`` is the default itself for ``export k8s``;
for ``export helm`` (``HelmValues``) it records the default under ``path`` in
values.yaml and returns a token that ``HelmValues.template`` turns into
``{{ index .Values ... }}`` once the object is written. So the chart renders,
with its default values, the very objects ``export k8s`` writes: the objects
are built once, by the same code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from alert_sidecar.pipeline.export.documents import to_yaml

# What ``managed-by`` says on objects that ``export k8s`` wrote.
EXPORTER = "alert-pipeline"


class Values:
    """The settings of an export as they are: ``export k8s`` writes the defaults."""

    def get(self, path: tuple[str, ...], default: Any, doc: str) -> Any:
        """The value of a setting (``doc``: what values.yaml says of it)."""
        return default

    def namespace(self, default: str) -> str:
        return default

    def managed_by(self) -> str:
        return EXPORTER


@dataclass
class Setting:
    """One key of values.yaml."""

    path: tuple[str, ...]
    default: Any
    doc: str


_TOKEN = re.compile(r"__helm_value_(\d+)__")


class HelmValues(Values):
    """The settings as Helm values: ``get`` records them and returns tokens for ``template`` to write."""

    def __init__(self) -> None:
        self.settings: dict[tuple[str, ...], Setting] = {}
        self._expressions: list[tuple[str, bool]] = []  # token number -> (expression, is a string)

    def get(self, path: tuple[str, ...], default: Any, doc: str) -> Any:
        known = self.settings.get(path)
        if known is not None and known.default != default:
            raise ValueError(f"value {'.'.join(path)} asked with two defaults")  # a bug of the builder
        self.settings[path] = Setting(path, default, doc)
        quoted = " ".join(json.dumps(key) for key in path)
        return self._token(f"index .Values {quoted}", isinstance(default, str))

    def namespace(self, default: str) -> str:
        return self._token('include "alert-pipeline.namespace" .', True)

    def managed_by(self) -> str:
        return self._token(".Release.Service", True)

    def condition(self, path: tuple[str, ...], default: bool, doc: str) -> str:
        """The test of ``{{- if ... }}`` around an object that a boolean value turns off."""
        self.get(path, default, doc)
        return "index .Values " + " ".join(json.dumps(key) for key in path)

    def tree(self) -> dict[str, Any]:
        """values.yaml's content, nested as the paths say."""
        root: dict[str, Any] = {}
        for setting in self.settings.values():
            node = root
            for key in setting.path[:-1]:
                node = node.setdefault(key, {})
            node[setting.path[-1]] = setting.default
        return root

    def template(self, obj: dict[str, Any]) -> str:
        """``obj`` as the YAML of a template: every token an expression of the chart's values."""
        expressions: dict[str, str] = {}

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {key: walk(value) for key, value in node.items()}
            if isinstance(node, list):
                return [walk(item) for item in node]
            if isinstance(node, str) and _TOKEN.search(node):
                placeholder = f"__helm_expression_{len(expressions)}__"
                expressions[placeholder] = self._expression(node)
                return placeholder
            return node

        # Literal text that holds "{{" (a comment in the pipeline file, say) must reach the output as it is.
        text = re.sub(r"\{\{", '{{ "{{" }}', to_yaml(walk(obj)))
        for placeholder, expression in expressions.items():
            text = text.replace(placeholder, expression)
        return text

    def _token(self, expression: str, is_string: bool) -> str:
        self._expressions.append((expression, is_string))
        return f"__helm_value_{len(self._expressions) - 1}__"

    def _expression(self, text: str) -> str:
        """``{{ ... }}`` for a scalar holding tokens: one alone keeps its type; text around them makes a string."""
        whole = _TOKEN.fullmatch(text)
        if whole:
            expression, is_string = self._expressions[int(whole.group(1))]
            return f"{{{{ {expression} | quote }}}}" if is_string else f"{{{{ {expression} }}}}"
        pieces = _TOKEN.split(text)  # literal, number, literal, number, ..., literal
        literal = "".join(piece.replace("%", "%%") if i % 2 == 0 else "%v" for i, piece in enumerate(pieces))
        arguments = " ".join(f"({self._expressions[int(number)][0]})" for number in pieces[1::2])
        return f"{{{{ printf {json.dumps(literal)} {arguments} | quote }}}}"
