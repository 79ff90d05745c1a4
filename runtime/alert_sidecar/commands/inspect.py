"""``alert-sidecar inspect``: print alerts as JSON, one per line, from Kafka or from files.

What kcat or kafka-avro-console-consumer do for generic Kafka, for alert
streams: the Confluent wire format (Rubin), Avro container files (ZTF) and
JSON are told apart by their first bytes, Rubin's schema ids are known
without a registry, and the JSON is the contract's (64-bit ids in full, bytes
as base64, NaN as null, timestamps ISO 8601 in UTC), so what is printed is
what a worker asking for JSON receives.

A SOURCE is a buffer URI, ``kafka://host:port/topic`` (every partition, from
the start up to where it ends when the command starts, or with --from-end the
alerts that arrive while it runs), or a file holding one alert, as a ZTF
``.avro`` packet or a Rubin alert saved from Kafka does.

An alert that cannot be decoded is one line on stderr, naming the alert and
why; the others are still printed, and the exit code is 1 at the end.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import click

from alert_sidecar.kafka.buffers import Buffer, parse_buffer
from alert_sidecar.config import ENV_PREFIX, parse_pairs
from alert_sidecar.formats.decoding import DecodeError, decode, to_json
from alert_sidecar.exceptions import KafkaUnreachable, SidecarError
from alert_sidecar.formats.content import AUTO, FORMATS, JSON, RAW, content_type_for, sniff
from alert_sidecar.formats.schemas import SchemaRegistryUnavailable, SchemaSource, UnknownSchemaError, schema_source

PROG = "alert-sidecar inspect"

# Names of the formats as a user types them, by content type, for messages.
_FORMAT_NAMES = {content_type: name for name, content_type in FORMATS.items()}

# How many of an undecodable alert's first bytes a message shows: enough to
# see a magic byte, a schema id or the start of a text.
_SHOWN_BYTES = 8


@dataclass
class InspectedAlert:
    """One alert's bytes and where they came from."""

    label: str  # names the alert in messages: a file, or topic, partition and offset
    value: bytes | None
    content_type: str | None = None  # None: tell from the bytes
    file: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] | None = None
    problem: str | None = None  # why there are no bytes to decode (a file that cannot be read)


@click.command(
    name="inspect",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 every alert printed; 1 some alert could not be decoded (said on stderr) or the schema "
           "registry is unavailable; 2 bad option; 3 Kafka unreachable or topic missing.",
)
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--format", "format_name", type=click.Choice([AUTO, *FORMATS]), default=AUTO, show_default=True,
              help="What the alerts are; 'auto' tells Avro container files (ZTF), the Confluent wire format "
                   "(Rubin) and JSON apart by their first bytes, as does a buffer's ?format=.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N alerts in all (printed or not).")
@click.option("--schema-registry", envvar=f"{ENV_PREFIX}_SCHEMA_REGISTRY", metavar="URL",
              help="Confluent-compatible schema registry, asked before Rubin's schemas (which need none).")
@click.option("--schema-dir", envvar=f"{ENV_PREFIX}_SCHEMA_DIR", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder of Avro schemas named <id>.avsc, looked up first.")
@click.option("--meta", is_flag=True,
              help="Print each alert in an envelope with its topic, partition, offset, timestamp, key, headers, "
                   "schema id and content type; the alert is under \"alert\".")
@click.option("--field", "fields", multiple=True, metavar="PATH",
              help="Print only this field (dotted path, e.g. diaSource.psfFlux), as a worker asking for it gets "
                   "it; repeatable.")
@click.option("--from-beginning/--from-end", default=True, show_default=True,
              help="Kafka: read what the topic holds, from its start to where it ends when the command starts; "
                   "or wait at its end for new alerts, until --limit or --timeout seconds pass without one.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, metavar="S",
              help="Seconds to wait for Kafka (and, with --from-end, for the next alert) before giving up.")
@click.option("--kafka-config", "kafka_config", multiple=True, envvar=f"{ENV_PREFIX}_KAFKA_CONFIG",
              metavar="KEY=VALUE", help="librdkafka setting (e.g. security.protocol=SASL_SSL); repeatable.")
def inspect_command(sources, format_name, limit, schema_registry, schema_dir, meta, fields, from_beginning,
                    timeout, kafka_config) -> None:
    """Print the alerts of each SOURCE as JSON, one line per alert.

    SOURCE is a buffer, kafka://HOST:PORT/TOPIC, or a file holding one alert
    (a ZTF .avro packet, a Rubin alert in the Confluent wire format, a JSON
    document). Examples:

    \b
      alert-sidecar inspect kafka://localhost:9092/alerts --limit 5 --meta
      alert-sidecar inspect ztf/*.avro --field candid --field candidate.magpsf
    """
    out = sys.stdout.buffer  # alerts are written as the bytes of their JSON form
    try:
        extra = parse_pairs(kafka_config, "--kafka-config")
        schemas = schema_source(schema_registry, schema_dir)
        forced = content_type_for(format_name)
        printer = _Printer(out, schemas, meta, tuple(fields) or None)
        for alert in _alerts(sources, forced, limit, from_beginning, timeout, extra):
            printer.show(alert)
        out.flush()
    except BrokenPipeError:
        _quiet_broken_pipe(out)
        return
    except KeyboardInterrupt:  # Ctrl-C ends a --from-end watch: what was printed stands
        raise SystemExit(130) from None
    except SidecarError as err:
        try:
            out.flush()
        except BrokenPipeError:
            pass
        click.echo(f"alert-sidecar: error: {err}", err=True)
        raise SystemExit(err.exit_code) from None
    if printer.failed:
        click.echo(f"{PROG}: {printer.failed} of {printer.seen} alerts could not be decoded", err=True)
        raise SystemExit(1)


# --- Where alerts come from ---------------------------------------------------------


def _alerts(sources: tuple[str, ...], forced: str | None, limit: int | None, from_beginning: bool,
            timeout: float, extra: dict[str, str]) -> Iterator[InspectedAlert]:
    buffers: list[Buffer | None] = []
    for source in sources:  # every URI checked before anything is read
        buffers.append(parse_buffer(source, what="SOURCE") if source.startswith("kafka:") else None)
    count = 0
    for source, buffer in zip(sources, buffers):
        if buffer is not None:
            content_type = forced or content_type_for(buffer.format)
            alerts = _kafka_alerts(buffer, content_type, from_beginning, timeout, extra)
        else:
            alerts = _file_alert(source, forced)
        try:
            for alert in alerts:
                yield alert
                count += 1
                if limit is not None and count >= limit:
                    return
        finally:
            close = getattr(alerts, "close", None)
            if close is not None:
                close()  # a Kafka consumer leaves the cluster now, not when collected


def _file_alert(path: str, content_type: str | None) -> Iterator[InspectedAlert]:
    # A file that cannot be read counts as an alert that cannot be decoded, as
    # `cat` goes on past a missing file: the other SOURCEs are still printed.
    file = Path(path)
    if file.is_dir():
        yield InspectedAlert(label=path, value=None, file=path,
                             problem=f"it is a folder: give its files (e.g. {path.rstrip('/')}/*.avro)")
        return
    try:
        value = file.read_bytes()
    except OSError as exc:
        yield InspectedAlert(label=path, value=None, file=path, problem=f"it cannot be read: {exc.strerror or exc}")
        return
    yield InspectedAlert(label=path, value=value, content_type=content_type, file=path)


def _kafka_alerts(buffer: Buffer, content_type: str | None, from_beginning: bool, timeout: float,
                  extra: dict[str, str]) -> Iterator[InspectedAlert]:
    from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

    problems: list[str] = []
    config = {
        "bootstrap.servers": buffer.bootstrap,
        # A group of its own that never commits: inspecting moves no one's offsets.
        "group.id": f"alert-sidecar-inspect-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "error_cb": lambda err: problems.append(err.str()),
        # librdkafka's own log lines would mix with the alerts' messages on stderr;
        # its errors reach error_cb and are said once, when they matter.
        "log_level": 0,
        **extra,
    }
    consumer = Consumer(config)

    def unreachable(what: str) -> KafkaUnreachable:
        last = f" ({problems[-1]})" if problems else ""
        return KafkaUnreachable(f"{what}{last}; is the broker running? (`alert-sidecar kafka up` starts a local one)")

    try:
        try:
            metadata = consumer.list_topics(buffer.topic, timeout=timeout)
        except KafkaException as exc:
            raise unreachable(f"cannot reach Kafka at {buffer.bootstrap} within {timeout:g} s: "
                              f"{exc.args[0].str() if exc.args else exc}") from None
        topic = metadata.topics.get(buffer.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaUnreachable(f"buffer {buffer} does not exist: check the topic name "
                                   f"(topics there: {_some_topics(consumer, timeout)})")
        partitions = sorted(topic.partitions)

        ends: dict[int, int] = {}
        if from_beginning:
            start = []
            for partition in partitions:
                try:
                    low, high = consumer.get_watermark_offsets(TopicPartition(buffer.topic, partition),
                                                               timeout=timeout)
                except KafkaException as exc:
                    raise unreachable(f"cannot read the offsets of {buffer} partition {partition} "
                                      f"within {timeout:g} s: {exc}") from None
                if high > low:
                    start.append(TopicPartition(buffer.topic, partition, low))
                    ends[partition] = high
            if not start:
                return
            consumer.assign(start)
        else:
            consumer.assign([TopicPartition(buffer.topic, p, OFFSET_END) for p in partitions])

        last_event = time.monotonic()
        while not from_beginning or ends:
            message = consumer.poll(min(timeout, 1.0))
            now = time.monotonic()
            if message is None:
                if now - last_event < timeout:
                    continue
                if from_beginning:
                    left = ", ".join(f"partition {p} up to offset {o}" for p, o in sorted(ends.items()))
                    raise unreachable(f"{buffer}: no alert came within {timeout:g} s although the topic "
                                      f"holds more ({left})")
                return  # --from-end: quiet for --timeout seconds, so done
            last_event = now
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if from_beginning:
                        _finish(consumer, ends, buffer.topic, message.partition(), TopicPartition)
                    continue
                if error.fatal() or error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                                                     KafkaError.TOPIC_AUTHORIZATION_FAILED):
                    raise KafkaUnreachable(f"cannot read {buffer}: {error.str()}")
                problems.append(error.str())  # librdkafka retries by itself; said if it never recovers
                continue
            partition, offset = message.partition(), message.offset()
            if from_beginning:
                end = ends.get(partition)
                if end is None or offset >= end:  # written after the command started
                    _finish(consumer, ends, buffer.topic, partition, TopicPartition)
                    continue
                if offset >= end - 1:
                    _finish(consumer, ends, buffer.topic, partition, TopicPartition)
            timestamp_type, timestamp = message.timestamp()
            yield InspectedAlert(
                label=f"{buffer.uri} partition {partition} offset {offset}",
                value=message.value(),
                content_type=content_type,
                topic=message.topic(),
                partition=partition,
                offset=offset,
                timestamp_ms=timestamp if timestamp_type != 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
                key=message.key(),
                headers=message.headers(),
            )
    finally:
        consumer.close()


def _finish(consumer, ends: dict[int, int], topic: str, partition: int, topic_partition) -> None:
    """A partition read to its end at start: fetch no more of it."""
    if ends.pop(partition, None) is not None:
        consumer.pause([topic_partition(topic, partition)])


def _some_topics(consumer, timeout: float) -> str:
    from confluent_kafka import KafkaException

    try:
        names = sorted(t for t in consumer.list_topics(timeout=timeout).topics if not t.startswith("__"))
    except KafkaException:  # only for the message; the caller reports the missing topic anyway
        return "unknown"
    if not names:
        return "none"
    return ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")


# --- What is printed --------------------------------------------------------------------


class _Printer:
    """Decodes alerts and writes their lines; counts what failed."""

    def __init__(self, out: IO[bytes], schemas: SchemaSource, meta: bool, fields: tuple[str, ...] | None) -> None:
        self.out = out
        self.schemas = schemas
        self.meta = meta
        self.fields = fields
        self.seen = 0
        self.failed = 0

    def show(self, alert: InspectedAlert) -> None:
        self.seen += 1
        if alert.problem is not None:
            self.failed += 1
            click.echo(f"{PROG}: {alert.label}: {alert.problem}", err=True)
            return
        try:
            content_type = self._content_type(alert)
            alert_json, schema_id = self._decode(alert, content_type)
        except (DecodeError, UnknownSchemaError) as exc:
            self.failed += 1
            click.echo(f"{PROG}: {alert.label}: cannot decode: {exc}", err=True)
            return
        except SchemaRegistryUnavailable:
            raise  # every later alert would wait for it too: stop, with its message
        line = self._envelope(alert, content_type, schema_id, alert_json) if self.meta else alert_json
        self.out.write(line + b"\n")
        self.out.flush()  # a line as soon as it is known, for --from-end and for pipes

    def _content_type(self, alert: InspectedAlert) -> str:
        if alert.value is None:
            raise DecodeError("it has no value (a tombstone)")
        if alert.content_type is not None:
            return alert.content_type
        found = sniff(alert.value)
        if found == RAW and alert.value.lstrip()[:1] in (b"{", b"["):
            found = JSON  # JSON after leading white space: still unambiguous
        if found == RAW:
            raise DecodeError(
                f"its format cannot be told from its bytes (first {_SHOWN_BYTES}: "
                f"{alert.value[:_SHOWN_BYTES].hex(' ') or 'none, it is empty'}): they open neither an Avro "
                "container file ('Obj' 01), nor the Confluent wire format (magic byte 00 and a 4-byte schema "
                "id), nor JSON; give --format (e.g. --format raw to see the bytes)")
        return found

    def _decode(self, alert: InspectedAlert, content_type: str) -> tuple[bytes, int | None]:
        assert alert.value is not None
        if content_type == RAW:
            return json.dumps(base64.b64encode(alert.value).decode("ascii")).encode(), None
        try:
            record, schema_id = decode(alert.value, content_type, self.schemas)
        except DecodeError as exc:
            name = _FORMAT_NAMES.get(content_type, content_type)
            how = "given" if alert.content_type else "told from its first bytes"
            raise DecodeError(f"{exc.reason} (format {name}, {how})") from None
        return to_json(record, self.fields), schema_id

    def _envelope(self, alert: InspectedAlert, content_type: str, schema_id: int | None, alert_json: bytes) -> bytes:
        key_text, key_base64 = _text_or_base64(alert.key)
        envelope = {
            "file": alert.file,
            "topic": alert.topic,
            "partition": alert.partition,
            "offset": alert.offset,
            "timestamp_ms": alert.timestamp_ms,
            "key": key_text,
            **({"key_base64": key_base64} if key_base64 is not None else {}),
            "headers": _headers(alert.headers),
            "schema_id": schema_id,
            "content_type": content_type,
        }
        head = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        return head[:-1].encode("utf-8") + b',"alert":' + alert_json + b"}"


def _text_or_base64(value: bytes | None) -> tuple[str | None, str | None]:
    """A key as text when it is UTF-8 (as keys usually are), else None and its base64."""
    if value is None:
        return None, None
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(value).decode("ascii")


def _headers(headers: list[tuple[str, bytes | None]] | None) -> dict[str, str | None] | None:
    """Headers as an object of texts (the dead-letter reasons are text); bytes that are not UTF-8 escaped."""
    if not headers:
        return None
    return {name: None if value is None else value.decode("utf-8", errors="backslashreplace")
            for name, value in headers}


def _quiet_broken_pipe(out: IO[bytes]) -> None:
    """The reader of stdout left (``inspect ... | head``): stop without a traceback."""
    try:
        fileno = out.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)  # Python's flush of stdout at exit must not fail again
    os.close(devnull)
    sys.exit(0)
