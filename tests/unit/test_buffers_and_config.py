"""Buffer URIs, KEY=VALUE flags and formats: what a user types, and the messages for mistakes."""

import pytest

from alert_sidecar.kafka.buffers import parse_buffer
from alert_sidecar.config import load_config_file, parse_pairs, parse_routes
from alert_sidecar.exceptions import ConfigError
from alert_sidecar.formats.content import AVRO_CONFLUENT, AVRO_OCF, JSON, RAW, accepted, sniff


def test_buffer_with_several_brokers():
    buffer = parse_buffer("kafka://k1:9092,k2:9093/ztf-alerts")
    assert buffer.bootstrap == "k1:9092,k2:9093"
    assert buffer.topic == "ztf-alerts"
    assert str(buffer) == "kafka://k1:9092,k2:9093/ztf-alerts"


@pytest.mark.parametrize(
    "text, says",
    [
        ("localhost:9092/alerts", "not a buffer URI"),
        ("http://localhost:9092/alerts", "only kafka://"),
        ("kafka://localhost:9092", "names no topic"),
        ("kafka:///alerts", "names no broker"),
        ("kafka://localhost/alerts", "is not host:port"),
        ("kafka://localhost:99999/alerts", "out of range"),
        ("kafka://localhost:9092/bad topic", "not a Kafka topic name"),
    ],
)
def test_malformed_buffers_say_what_is_wrong(text, says):
    with pytest.raises(ConfigError, match=says):
        parse_buffer(text, what="--in")


def test_pairs_and_routes():
    assert parse_pairs(("security.protocol=SSL", "a = b=c"), "--kafka-config") == {
        "security.protocol": "SSL", "a": "b=c"}
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_pairs(("novalue",), "--kafka-config")
    routes = parse_routes(("watchlist=kafka://h:1/wl",))
    assert routes["watchlist"].topic == "wl"
    with pytest.raises(ConfigError, match="reserved"):
        parse_routes(("dead-letter=kafka://h:1/x",))


def test_config_file_keys_map_to_options(tmp_path):
    path = tmp_path / "stage.toml"
    path.write_text('in = "kafka://h:1/a"\nworker = ["h:2"]\nbatch-size = 50\n')
    assert load_config_file(str(path)) == {"input_": "kafka://h:1/a", "workers": ["h:2"], "batch_size": 50}
    path.write_text("in = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(str(path))


def test_sniffing_tells_the_alert_formats_apart():
    assert sniff(b"Obj\x01rest") == AVRO_OCF
    assert sniff(b"\x00\x00\x00\x04\x4d\x02") == AVRO_CONFLUENT
    assert sniff(b'{"diaSourceId": 1}') == JSON
    assert sniff(b"plain") == RAW
    assert sniff(None) == RAW


def test_accepts():
    assert accepted(JSON, [])
    assert accepted(JSON, ["*/*"])
    assert accepted(JSON, ["application/*"])
    assert not accepted(AVRO_OCF, [JSON])
