"""Reading a pipeline file: YAML with the line of every item, the JSON Schema, then the checks of meaning.

``load(path)`` returns the ``Pipeline`` and its warnings, or raises a
``PipelineError`` that carries every error found, each ``FILE:LINE: message``
like a compiler's. Three passes:

1. YAML, composed into nodes (PyYAML's ``compose``), so that each key and item
   keeps its line; duplicate keys, which PyYAML would silently let the last
   win, are errors;
2. the JSON Schema ``schema.json`` beside this module (draft 2020-12, the one
   editors use), each error's path mapped back to its line;
3. what a schema cannot say: names that refer to nothing (with the closest
   known name), loops between stages, a stage that reads its own output,
   settings that cannot work together, secrets written in the file.

An item the schema rejected is left out of the third pass, but its name is
still known, so that one mistake is not reported again by every reference.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from alert_sidecar.exceptions import ConfigError
from alert_sidecar.pipeline.model import (CONNECT_LANGUAGES, BufferSpec, ClusterSpec, Pipeline, StageSpec,
                                          WorkerSpec, plural)
from alert_sidecar.secrets import is_reference, is_secret

ERROR = "error"
WARNING = "warning"
SECTIONS = ("clusters", "buffers", "stages")
DEFAULT_REPLICATION = 3
DEFAULT_MIN_INSYNC = 2
# A file whose aliases expand past this many nodes is refused (a "billion laughs").
MAX_NODES = 200_000

Path_ = tuple[Any, ...]  # a place in the file: ("buffers", "alerts", "partitions")


@dataclass(frozen=True)
class Diagnostic:
    """One error or warning, at a line of a file (``line`` None: about the file as a whole)."""

    file: str
    line: int | None
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        """``FILE:LINE: message``."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"

    def format(self) -> str:
        """``FILE:LINE: error: message``, as ``alert-pipeline validate`` prints it."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.severity}: {self.message}"


class PipelineError(ConfigError):
    """A pipeline file is wrong: ``errors`` holds all that was found, ``warnings`` the rest."""

    def __init__(self, errors: list[Diagnostic], warnings: list[Diagnostic] | None = None) -> None:
        self.errors = errors
        self.warnings = warnings or []
        super().__init__("\n".join(str(error) for error in errors))


def load(path: str | Path) -> tuple[Pipeline, list[Diagnostic]]:
    """Read, check and return the pipeline at ``path`` and its warnings; raise ``PipelineError`` if wrong."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise PipelineError([Diagnostic(name, None, f"cannot read the file: {err.strerror or err}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise PipelineError([Diagnostic(name, line, "not UTF-8 text: a pipeline file is YAML, in UTF-8")]) from None
    return loads(text, name)


def loads(text: str, file: str = "<string>") -> tuple[Pipeline, list[Diagnostic]]:
    """Check and return the pipeline written in ``text`` (``file``: the name messages give)."""
    reader = _Reader(file)
    data = reader.read(text)
    pipeline = _Checker(file, data, reader.lines, reader.errors).check()
    return pipeline


def schema() -> dict[str, Any]:
    """The pipeline file's JSON Schema."""
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8"))


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``name``, or a list of the known names."""
    known = sorted(known)
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if match:
        return f" (did you mean '{match[0]}'?)"
    if not known:
        return " (none is defined)"
    return f" (known: {', '.join(known)})"


class _Reader:
    """YAML to plain data, with the line of every key and item in ``lines``."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.errors: list[Diagnostic] = []
        self._constructor = yaml.SafeLoader("")
        self._nodes = 0

    def read(self, text: str) -> Any:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            what = ", ".join(part for part in (err.context, err.problem) if part)
            self._error(mark.line + 1 if mark else 1, f"not valid YAML: {what}")
            raise PipelineError(self.errors) from None
        except yaml.YAMLError as err:  # the reader's: a character YAML does not allow
            position = getattr(err, "position", 0)
            self._error(text[:position].count("\n") + 1, f"not valid YAML: {err}")
            raise PipelineError(self.errors) from None
        if node is None:
            self._error(1, "the file is empty: a pipeline file starts with `version: 1`, then name, clusters, "
                           "buffers and stages (see docs/pipelines.md)")
            raise PipelineError(self.errors)
        data = self._build(node, (), set())
        if self.errors:
            raise PipelineError(self.errors)
        return data

    def _error(self, line: int, message: str) -> None:
        self.errors.append(Diagnostic(self.file, line, message))

    def _build(self, node: yaml.Node, where: Path_, above: set[int]) -> Any:
        self._nodes += 1
        line = node.start_mark.line + 1
        self.lines.setdefault(where, line)
        if self._nodes > MAX_NODES:
            if self._nodes == MAX_NODES + 1:
                self._error(line, f"the file expands to more than {MAX_NODES} items (aliases?): too large")
            return None
        if id(node) in above:
            self._error(line, "an alias refers to a node that holds it: the file would be infinite")
            return None
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._constructor.construct_object(node)
            except Exception as err:  # a bad tag or scalar: an error of the file
                self._error(line, f"not valid YAML: {getattr(err, 'problem', None) or err}")
                return None
        above = above | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            return [self._build(item, (*where, index), above) for index, item in enumerate(node.value)]
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self._error(key_line, "a key must be a plain name, not a list or a mapping")
                continue
            key = str(key_node.value)
            if key in result:
                self._error(key_line, f"duplicate key '{key}' (first at line {self.lines[(*where, key)]}): "
                                      f"keep one, YAML would silently keep only the last")
                continue
            self.lines[(*where, key)] = key_line
            result[key] = self._build(value_node, (*where, key), above)
        return result


def _dotted(where: Path_) -> str:
    return ".".join(str(part) for part in where) if where else "top level"


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_UNITS_BYTES = {"B": 1, "kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
                "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
_QUANTITY = re.compile(r"^(-?[0-9]+(?:\.[0-9]+)?)([A-Za-z]+)$")


def parse_quantity(text: str, units: dict[str, int]) -> int:
    """``7d`` in ms with ``units`` of durations, ``100GiB`` in bytes with those of sizes; ``unlimited`` is -1."""
    if text == "unlimited":
        return -1
    match = _QUANTITY.match(text)
    if not match or match.group(2) not in units:
        raise ValueError(f"not a quantity: {text!r}")
    return int(float(match.group(1)) * units[match.group(2)])


def _largest_unit(value: int, units: dict[str, int], names: tuple[str, ...]) -> str:
    for name in names:
        if value % units[name] == 0:
            return f"{value // units[name]}{name}"
    return f"{value}{names[-1]}"


def format_duration(ms: int) -> str:
    """A duration as the file writes it: ``604800000`` is ``7d``."""
    return "unlimited" if ms < 0 else _largest_unit(ms, _UNITS_MS, ("d", "h", "m", "s", "ms"))


def format_size(size: int) -> str:
    """A size as the file writes it: ``10737418240`` is ``10GiB``."""
    return "unlimited" if size < 0 else _largest_unit(size, _UNITS_BYTES, ("TiB", "GiB", "MiB", "KiB", "TB", "GB",
                                                                           "MB", "kB", "B"))


# What to write for a key that the schema found missing.
_REQUIRED_HINTS = {
    "version": "`version: 1`",
    "name": "`name: NAME` (the prefix of the consumer groups)",
    "clusters": "a `clusters:` mapping of cluster names to {bootstrap: HOST:PORT} or {local: {brokers: 1}}",
    "buffers": "a `buffers:` mapping of buffer names to {cluster: NAME, partitions: N}",
    "stages": "a `stages:` mapping of stage names to {input: BUFFER, output: BUFFER, worker: ...}",
    "input": "`input: BUFFER`, the buffer the stage reads",
    "cluster": "`cluster: NAME`, one of the clusters",
    "brokers": "`brokers: N`, how many brokers to start",
}

_LANGUAGE_OF_COMMAND = {"rscript": "r", "python": "python", "python3": "python", "java": "java"}


class _Checker:
    """The schema and the checks of meaning, over the data and lines the reader made."""

    def __init__(self, file: str, data: Any, lines: dict[Path_, int], errors: list[Diagnostic]) -> None:
        self.file = file
        self.data = data
        self.lines = lines
        self.errors = list(errors)
        self.warnings: list[Diagnostic] = []
        self.bad: set[Path_] = set()  # items (or whole sections) the schema rejected
        self.schema = schema()

    # -- reporting --------------------------------------------------------------------------------

    def line(self, where: Path_) -> int:
        where = tuple(where)
        while where and where not in self.lines:
            where = where[:-1]
        return self.lines.get(where, 1)

    def error(self, where: Path_, message: str) -> None:
        self.errors.append(Diagnostic(self.file, self.line(where), message))

    def warn(self, where: Path_, message: str) -> None:
        self.warnings.append(Diagnostic(self.file, self.line(where), message, WARNING))

    # -- the passes -------------------------------------------------------------------------------

    def check(self) -> tuple[Pipeline, list[Diagnostic]]:
        if not isinstance(self.data, dict):
            kind = {list: "a list", str: "a string"}.get(type(self.data), f"a {type(self.data).__name__}")
            self.error((), f"the top level is {kind}: a pipeline file is a mapping with version, name, clusters, "
                           "buffers and stages (see docs/pipelines.md)")
            raise PipelineError(self.errors)
        self.check_schema()
        pipeline = self.build()
        self.check_graph(pipeline)
        self.errors.sort(key=lambda d: d.line or 0)
        self.warnings.sort(key=lambda d: d.line or 0)
        if self.errors:
            raise PipelineError(self.errors, self.warnings)
        return pipeline, self.warnings

    def check_schema(self) -> None:
        validator = jsonschema.Draft202012Validator(self.schema)
        for err in validator.iter_errors(self.data):
            self.schema_error(err)

    def schema_error(self, err: jsonschema.ValidationError) -> None:
        if err.context:  # anyOf and the like: the branch that came closest
            self.schema_error(jsonschema.exceptions.best_match(err.context))
            return
        where = tuple(err.absolute_path)
        self.bad.add(where[:2])
        custom = self._custom_message(err)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = err.schema.get("properties", {})
            for key in err.instance:
                if key not in known:
                    self.error((*where, key), f"{_dotted(where)}: unknown key '{key}'{closest(key, known)}")
        elif err.validator == "required" and isinstance(err.instance, dict):
            for key in err.validator_value:
                if key not in err.instance:
                    hint = _REQUIRED_HINTS.get(key, f"`{key}:`")
                    self.error(where, f"{_dotted(where)}: no {key}: add {hint}")
        elif err.validator == "propertyNames":
            pass  # its errors come through context, above
        elif err.absolute_schema_path and "propertyNames" in err.absolute_schema_path:
            self.bad.add((*where, err.instance)[:2])
            self.error((*where, err.instance),
                       f"{_dotted(where)}: '{err.instance}' is not a valid name: {custom or err.message}")
        elif err.validator == "enum":
            hint = closest(str(err.instance), map(str, err.validator_value))
            choices = ", ".join(map(str, err.validator_value))
            self.error(where, f"{_dotted(where)}: '{err.instance}' is not one of {choices}{hint}")
        elif len(where) >= 4 and where[2] in ("secrets", "settings") and (where[2] == "secrets"
                                                                          or is_secret(str(where[3]))):
            # jsonschema's own message would show the value: a secret's is never shown.
            self.error(where, f"{_dotted(where)}: {custom or 'must be a string: @env:VAR or @file:PATH'}")
        else:
            self.error(where, f"{_dotted(where)}: {custom or err.message}")

    def _custom_message(self, err: jsonschema.ValidationError) -> str | None:
        """The schema's own ``x-messages`` text for the keyword that failed, the outermost of a chain of $refs."""
        node: Any = self.schema
        chain: list[dict[str, Any]] = [node]

        def follow(key: str) -> None:  # jsonschema's paths skip the $refs they went through
            nonlocal node
            while isinstance(node, dict) and key not in node and "$ref" in node:
                node = self.schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
                chain.append(node)

        path = list(err.absolute_schema_path)
        for step in path[:-1]:
            follow(step)
            if not isinstance(node, (dict, list)):
                return None
            node = node[step]
            if isinstance(node, dict):
                chain = [node]
        follow(err.validator)
        for holder in chain:
            text = holder.get("x-messages", {}).get(err.validator) if isinstance(holder, dict) else None
            if text:
                return text
        return None

    def known(self, section: str) -> dict[str, Any]:
        value = self.data.get(section)
        return value if isinstance(value, dict) else {}

    def items(self, section: str) -> Iterable[tuple[str, dict[str, Any]]]:
        if (section,) in self.bad:
            return
        for name, item in self.known(section).items():
            if (section, name) not in self.bad and isinstance(item, dict):
                yield name, item

    # -- the model, checked item by item ----------------------------------------------------------

    def build(self) -> Pipeline:
        clusters = {name: self.build_cluster(name, item) for name, item in self.items("clusters")}
        buffers = {}
        for name, item in self.items("buffers"):
            buffer = self.build_buffer(name, item, clusters)
            if buffer is not None:
                buffers[name] = buffer
        pipeline_name = self.data.get("name") if isinstance(self.data.get("name"), str) else "pipeline"
        stages = {name: self.build_stage(name, item, pipeline_name, buffers)
                  for name, item in self.items("stages")}
        return Pipeline(path=self.file, name=pipeline_name, version=self.data.get("version", 1),
                        clusters=clusters, buffers=buffers, stages=stages)

    def build_cluster(self, name: str, item: dict[str, Any]) -> ClusterSpec:
        at = ("clusters", name)
        local = item.get("local")
        if "bootstrap" not in item and local is None:
            self.error(at, f"cluster '{name}' has neither bootstrap nor local: give `bootstrap: HOST:PORT` for a "
                           "cluster that exists, or `local: {brokers: 1}` for one alert-pipeline up starts")
        elif "bootstrap" in item and local is not None:
            self.error((*at, "local"), f"cluster '{name}' has both bootstrap and local: keep bootstrap for a cluster "
                                       "that exists, or local for one alert-pipeline up starts")
        settings: dict[str, str] = {}
        secrets = dict(item.get("secrets", {}))
        for key, value in item.get("settings", {}).items():
            if key == "bootstrap.servers":
                self.error((*at, "settings", key), f"cluster '{name}': set its brokers with `bootstrap:`, "
                                                   "not settings.bootstrap.servers")
            elif key in secrets:
                self.error((*at, "settings", key), f"cluster '{name}': {key} is in both settings and secrets: "
                                                   "keep it in secrets only")
            elif is_secret(key) and not is_reference(value):
                self.error((*at, "settings", key),
                           f"cluster '{name}': settings.{key} is a secret written in the file: move it to "
                           f"`secrets: {{{key}: \"@env:VAR\"}}` (or \"@file:PATH\") and change the secret, "
                           "since the file may have been shared")
            else:
                settings[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return ClusterSpec(name=name, line=self.line(at), bootstrap=item.get("bootstrap"),
                           local_brokers=local["brokers"] if local is not None else None,
                           settings=settings, secrets=secrets)

    def refer(self, where: Path_, what: str, name: str, section: str) -> bool:
        """Whether ``name`` is defined in ``section``; an error at ``where`` if not."""
        known = self.known(section)
        if name in known:
            return True
        self.error(where, f"{what} '{name}' is not defined under {section}{closest(name, known)}")
        return False

    def build_buffer(self, name: str, item: dict[str, Any], clusters: dict[str, ClusterSpec]) -> BufferSpec | None:
        at = ("buffers", name)
        cluster_name = item["cluster"]
        if not self.refer((*at, "cluster"), f"buffer '{name}': cluster", cluster_name, "clusters"):
            return None
        cluster = clusters.get(cluster_name)
        brokers = cluster.local_brokers if cluster is not None else None
        replication = item.get("replication", DEFAULT_REPLICATION if brokers is None
                               else min(DEFAULT_REPLICATION, brokers))
        if "replication" in item and brokers is not None and replication > brokers:
            self.error((*at, "replication"),
                       f"buffer '{name}': replication is {replication} but local cluster '{cluster_name}' has "
                       f"{plural(brokers, 'broker')}: lower replication to {brokers} or start "
                       f"`local: {{brokers: {replication}}}`")
        min_insync = item.get("min_insync_replicas", min(DEFAULT_MIN_INSYNC, replication))
        if min_insync > replication:
            self.error((*at, "min_insync_replicas"),
                       f"buffer '{name}': min_insync_replicas is {min_insync} but replication is {replication}: "
                       f"every write would be refused; set min_insync_replicas to at most {replication}")
        retention = item.get("retention", {})
        limits = {}
        for key, units in (("time", _UNITS_MS), ("bytes", _UNITS_BYTES)):
            if key in retention:
                limits[key] = parse_quantity(retention[key], units)
                if limits[key] == 0 or (limits[key] < 0 and retention[key] != "unlimited"):
                    self.error((*at, "retention", key),
                               f"buffer '{name}': retention.{key} is {retention[key]}: give a positive "
                               f"{'duration (like 7d)' if key == 'time' else 'size (like 100GiB)'}, or unlimited")
        return BufferSpec(name=name, line=self.line(at), cluster=cluster_name, topic=item.get("topic", name),
                          partitions=item.get("partitions", 1), replication=replication,
                          min_insync_replicas=min_insync, retention_ms=limits.get("time"),
                          retention_bytes=limits.get("bytes"), format=item.get("format", "auto"),
                          schema=item.get("schema"))

    def build_worker(self, at: Path_, stage: str, item: Any) -> WorkerSpec | None:
        if item is None or item == "none":
            return None
        if ("command" in item) == ("address" in item):
            self.error(at, f"stage '{stage}': a worker has a command (that the sidecar starts) or an address "
                           "(of a worker already running), one of the two")
        command = item.get("command")
        language = item.get("language")
        if language is None and command:
            language = _LANGUAGE_OF_COMMAND.get(Path(command[0]).name.lower())
        protocol = item.get("protocol", "connect" if language in CONNECT_LANGUAGES else "grpc")
        return WorkerSpec(line=self.line(at), command=command, address=item.get("address"), language=language,
                          protocol=protocol, env=dict(item.get("env", {})))

    def build_stage(self, name: str, item: dict[str, Any], pipeline: str,
                    buffers: dict[str, BufferSpec]) -> StageSpec:
        at = ("stages", name)
        worker = self.build_worker((*at, "worker"), name, item.get("worker"))
        batch = item.get("batch", {})
        stage = StageSpec(name=name, line=self.line(at), input=item["input"], output=item.get("output"),
                          routes=dict(item.get("routes", {})), dead_letter=item.get("dead_letter"), worker=worker,
                          instances=item.get("instances", 1), processes=item.get("processes", 1),
                          ordering=item.get("ordering", "partition"), batch_size=batch.get("size"),
                          batch_linger_ms=batch.get("linger_ms"), group=item.get("group", f"{pipeline}-{name}"),
                          exactly_once=item.get("exactly_once", False))
        ends: list[tuple[Path_, str, str]] = [((*at, "input"), "input", stage.input)]
        if stage.output is not None:
            ends.append(((*at, "output"), "output", stage.output))
        ends += [((*at, "routes", route), f"route '{route}'", buffer) for route, buffer in stage.routes.items()]
        if stage.dead_letter is not None:
            ends.append(((*at, "dead_letter"), "dead_letter", stage.dead_letter))
        for where, what, buffer in ends:
            self.refer(where, f"stage '{name}': {what}", buffer, "buffers")
        for where, what, buffer in ends[1:]:
            if buffer == stage.input:
                self.error(where, f"stage '{name}' reads and writes buffer '{buffer}' (its {what}): it would read "
                                  "what it wrote, again and again; write to another buffer")
        if stage.is_mirror:
            if stage.routes:
                self.error((*at, "routes"), f"stage '{name}' has routes but no worker: a mirror stage copies every "
                                            "alert to its output, and only a worker chooses routes; add a worker "
                                            "or remove the routes")
            if stage.output is None:
                self.error(at, f"stage '{name}' has neither worker nor output: a mirror stage copies its input to "
                               "its output; add `output: BUFFER`, or a worker")
        elif stage.output is None and not stage.routes and stage.dead_letter is None:
            self.warn(at, f"stage '{name}' writes nothing (no output, routes or dead_letter): add an output")
        if stage.exactly_once:
            places = [(what, buffer, buffers[buffer].cluster) for _, what, buffer in ends if buffer in buffers]
            if len({cluster for _, _, cluster in places}) > 1:
                where = ", ".join(f"{what} '{buffer}' on {cluster}" for what, buffer, cluster in places)
                self.error((*at, "exactly_once"),
                           f"stage '{name}': exactly_once needs its input, outputs, routes and dead letter on one "
                           f"cluster, since a Kafka transaction cannot span clusters ({where}): move them to one "
                           "cluster, or set exactly_once: false")
        source = buffers.get(stage.input)
        if source is not None and stage.instances > source.partitions:
            self.warn((*at, "instances"),
                      f"stage '{name}' has {stage.instances} instances but its input '{stage.input}' has "
                      f"{plural(source.partitions, 'partition')}: {stage.instances - source.partitions} would sit "
                      f"idle; raise the buffer's partitions or lower instances")
        return stage

    # -- the graph --------------------------------------------------------------------------------

    def check_graph(self, pipeline: Pipeline) -> None:
        stages_whole = ("stages",) not in self.bad and not any(bad[0] == "stages" for bad in self.bad if bad)
        for name in pipeline.buffers:
            if stages_whole and not pipeline.readers(name) and not pipeline.writers(name):
                self.warn(("buffers", name), f"buffer '{name}' is neither read nor written by any stage: "
                                             "connect it to a stage, or remove it")
        used = {buffer.cluster for buffer in pipeline.buffers.values()}
        for name in pipeline.clusters:
            if name not in used and ("buffers",) not in self.bad:
                self.warn(("clusters", name), f"cluster '{name}' holds no buffer: remove it, or put a buffer on it")
        groups: dict[tuple[str, str], StageSpec] = {}
        for stage in pipeline.stages.values():
            source = pipeline.buffers.get(stage.input)
            if source is None:
                continue
            first = groups.setdefault((source.cluster, stage.group), stage)
            if first is not stage:
                self.error(("stages", stage.name, "group"),
                           f"stages '{first.name}' and '{stage.name}' share the consumer group '{stage.group}' on "
                           f"cluster '{source.cluster}': each would get only part of the alerts; give each its "
                           "own group")
        for cycle in find_cycles(pipeline):
            path = " -> ".join(f"{stage} -> {buffer}" for stage, buffer in cycle) + f" -> {cycle[0][0]}"
            self.error(("stages", cycle[0][0]), f"the stages form a loop: {path}: alerts would go round it "
                                                "forever; break it by writing one of these buffers elsewhere")


def find_cycles(pipeline: Pipeline) -> list[list[tuple[str, str]]]:
    """One loop per group of stages that reach each other, as [(stage, buffer it writes), ...].

    Each starts at its stage defined first. A stage that reads its own output
    is reported on its own, not here.
    """
    edges: dict[str, list[tuple[str, str]]] = {name: [] for name in pipeline.stages}
    for stage in pipeline.stages.values():
        for buffer in stage.writes():
            for reader in pipeline.readers(buffer):
                if reader.name != stage.name:
                    edges[stage.name].append((buffer, reader.name))
    order = sorted(pipeline.stages, key=lambda name: pipeline.stages[name].line)
    done: set[str] = set()
    cycles = []
    for start in order:
        if start in done:
            continue
        cycle = _cycle_from(start, edges)
        if cycle:
            cycles.append(cycle)
            done.update(stage for stage, _ in cycle)
    return cycles


def _cycle_from(start: str, edges: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]] | None:
    """A loop through ``start``, by a depth-first search, or None."""
    seen = {start}
    stack: list[tuple[str, list[tuple[str, str]]]] = [(start, [])]
    while stack:
        node, path = stack.pop()
        for buffer, target in edges[node]:
            if target == start:
                return [*path, (node, buffer)]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, (node, buffer)]))
    return None
