"""Per-cluster settings, secrets read from the environment or files, and the settings the sidecar refuses.

What a user notices: each Kafka client gets its own cluster's settings and no
other's, a secret is read from where it is named and never shown, and a
setting that would break at-least-once stops the sidecar with one line.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from alert_sidecar import cli
from alert_sidecar.config import load_config_file, parse_clusters
from alert_sidecar.exceptions import ConfigError
from alert_sidecar.kafka import consumer as consumer_module
from alert_sidecar.kafka import producer as producer_module
from alert_sidecar.kafka.buffers import parse_buffer
from alert_sidecar.kafka.clusters import Cluster, Clusters
from alert_sidecar.kafka.consumer import consumer_config
from alert_sidecar.kafka.producer import producer_config
from alert_sidecar.secrets import REDACTED, redacted, resolve

PASSWORD = "rubin-pw-3f9c1e"  # searched for in every output: it must never be there


def invoke(args, env=None):
    return CliRunner().invoke(cli.run, args, env=env or {}, catch_exceptions=False)


TWO_CLUSTERS = [
    "--cluster", "rubin=r1:9094,r2:9094",
    "--cluster-config", "rubin:security.protocol=SASL_SSL",
    "--cluster-config", "rubin:sasl.mechanism=SCRAM-SHA-512",
    "--cluster-config", "rubin:sasl.username=lasair",
    "--cluster-config", "rubin:sasl.password=@env:RUBIN_PASSWORD",
    "--kafka-config", "client.id=lasair-stage",
    "--in", "kafka://rubin/alerts", "--out", "kafka://local:9092/bright", "--worker", "w:1",
]


# -- buffers name their cluster ----------------------------------------------------


def test_a_buffer_names_a_cluster_by_name_or_by_its_brokers():
    named = parse_buffer("kafka://rubin/alerts", clusters={"rubin": "r1:9094,r2:9094"})
    assert (named.bootstrap, named.cluster, named.uri) == ("r1:9094,r2:9094", "rubin", "kafka://rubin/alerts")
    plain = parse_buffer("kafka://k1:9092,k2:9092/alerts")
    assert (plain.cluster_name, plain.cluster) == (None, "k1:9092,k2:9092")
    with pytest.raises(ConfigError, match=r"'lasair' is not host:port, nor a cluster .*\(defined: rubin\)"):
        parse_buffer("kafka://lasair/alerts", what="--out", clusters={"rubin": "r:1"})


def test_the_command_line_defines_clusters_and_their_settings(captured, monkeypatch):
    monkeypatch.setenv("RUBIN_PASSWORD", PASSWORD)
    result = invoke(TWO_CLUSTERS)
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert config.input.cluster == "rubin" and config.input.bootstrap == "r1:9094,r2:9094"
    assert config.dead_letter.uri == "kafka://rubin/alerts.dead-letter"  # beside the input, on its cluster
    assert config.clusters.settings_for(config.input) == {
        "client.id": "lasair-stage", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "lasair", "sasl.password": PASSWORD}
    assert config.clusters.settings_for(config.output) == {"client.id": "lasair-stage"}
    assert PASSWORD not in repr(config)  # the model holds the reference, not the value


def test_settings_given_for_a_bootstrap_string_go_to_the_buffers_on_it(captured):
    result = invoke(["--in", "kafka://a:1,a:2/alerts", "--out", "kafka://b:1/bright", "--worker", "w:1",
                     "--cluster-config", "b:1:security.protocol=SSL"])
    assert result.exit_code == 0, result.output
    clusters = captured["config"].clusters
    assert clusters.settings_for(captured["config"].output) == {"security.protocol": "SSL"}
    assert clusters.settings_for(captured["config"].input) == {}


@pytest.mark.parametrize("args, says", [
    (["--cluster-config", "lasair:sasl.username=x"], "no cluster is named 'lasair'"),
    (["--cluster-config", "sasl.username=x"], "is not NAME:KEY=VALUE"),
    (["--cluster", "a.b=h:1"], "is not a cluster name"),
    (["--cluster", "rubin=nohost"], "is not host:port"),
    (["--kafka-config", "sasl.password=@env:PW"], "is a secret"),
    (["--kafka-config", "bootstrap.servers=h:1"], "says where its cluster is"),
    (["--cluster", "r=h:1", "--cluster-config", "r:bootstrap.servers=h:2"], "is not a setting here"),
])
def test_cluster_mistakes_are_one_line(captured, args, says):
    result = invoke(["--in", "kafka://h:1/a", "--out", "kafka://h:1/b", "--worker", "w:1", *args])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_the_config_file_has_a_table_per_cluster(captured, tmp_path):
    secret = tmp_path / "rubin-password"
    secret.write_text(PASSWORD + "\n")
    path = tmp_path / "stage.toml"
    path.write_text(f'''
in = "kafka://rubin/alerts"
out = "kafka://lasair/bright"
worker = ["w:1"]

[clusters.rubin]
bootstrap = "r1:9094"
settings = {{ "security.protocol" = "SASL_SSL", "sasl.username" = "lasair" }}
secrets = {{ "sasl.password" = "@file:{secret}", "ssl.key.pem" = "inline-key" }}

[clusters.lasair]
bootstrap = "l1:9092"

[clusters.lasair.settings]
socket.keepalive.enable = true       # unquoted: TOML nests it, the file's reader joins it again

[clusters."b1:9092"]
settings = {{ "client.id" = "by-bootstrap" }}
''')
    result = invoke(["--config", str(path), "--cluster-config", "lasair:client.id=flag"])
    assert result.exit_code == 0, result.output
    config = captured["config"]
    clusters = config.clusters
    assert clusters.settings_for(config.input) == {"security.protocol": "SASL_SSL", "sasl.username": "lasair",
                                                   "sasl.password": PASSWORD, "ssl.key.pem": "inline-key"}
    assert clusters.settings_for(config.output) == {"socket.keepalive.enable": "true", "client.id": "flag"}
    assert clusters.settings_for(parse_buffer("kafka://b1:9092/x")) == {"client.id": "by-bootstrap"}
    assert "inline-key" not in repr(clusters) and PASSWORD not in repr(clusters)


def test_config_file_cluster_mistakes(tmp_path):
    path = tmp_path / "stage.toml"
    path.write_text('[clusters.rubin]\nsettings = { "a" = "b" }\n')
    with pytest.raises(ConfigError, match=r"\[clusters.rubin\] needs bootstrap"):
        load_config_file(str(path))
    path.write_text('[clusters.rubin]\nbootstrap = "h:1"\npassword = "x"\n')
    with pytest.raises(ConfigError, match="password is not one of bootstrap, settings, secrets"):
        load_config_file(str(path))


# -- secrets ----------------------------------------------------------------------


def test_secrets_come_from_the_environment_or_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RUBIN_PASSWORD", PASSWORD)
    assert resolve("@env:RUBIN_PASSWORD", "x") == PASSWORD
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\n")
    assert resolve(f"@file:{path}", "x") == PASSWORD  # the trailing newline is not part of it
    assert resolve("plain", "x") == "plain"


def test_a_secret_that_cannot_be_read_names_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VARIABLE", raising=False)
    with pytest.raises(ConfigError, match="cluster rubin's sasl.password: the environment variable "
                                          "NO_SUCH_VARIABLE is not set"):
        resolve("@env:NO_SUCH_VARIABLE", "cluster rubin's sasl.password")
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError, match=f"cannot read {missing}: No such file or directory"):
        resolve(f"@file:{missing}", "x")
    with pytest.raises(ConfigError, match="@vault: is not a reference"):
        resolve("@vault:kv/rubin", "x")


def test_a_missing_secret_stops_the_start_with_exit_2(captured, monkeypatch):
    monkeypatch.delenv("RUBIN_PASSWORD", raising=False)
    result = invoke(TWO_CLUSTERS)  # RUBIN_PASSWORD is not set
    assert result.exit_code == 2
    assert result.output.strip() == ("alert-sidecar: error: cluster rubin's sasl.password: "
                                     "the environment variable RUBIN_PASSWORD is not set")


def test_a_secret_given_on_the_command_line_is_refused(captured):
    args = TWO_CLUSTERS[:-8] + ["--cluster-config", f"rubin:sasl.password={PASSWORD}", *TWO_CLUSTERS[-8:]]
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert "where ps shows it" in result.output and PASSWORD not in result.output
    # From the environment (not shown by ps), the same setting is taken.
    env = {"ALERT_SIDECAR_CLUSTER_CONFIG": f"rubin:sasl.username=lasair rubin:sasl.password={PASSWORD}"}
    result = invoke(["--cluster", "rubin=r:1", "--in", "kafka://rubin/a", "--out", "kafka://rubin/b",
                     "--worker", "w:1"], env=env)
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert config.clusters.settings_for(config.input)["sasl.password"] == PASSWORD


def test_what_is_shown_of_settings_has_no_secret():
    shown = redacted({"sasl.password": PASSWORD, "ssl.key.password": "k", "ssl.keystore.password": "s",
                      "sasl.oauthbearer.client.secret": "c", "my.custom.secret.thing": "t", "api.password2": "p",
                      "sasl.username": "lasair", "ssl.ca.location": "@file:/x", "error_cb": print})
    assert shown == {"sasl.password": REDACTED, "ssl.key.password": REDACTED, "ssl.keystore.password": REDACTED,
                     "sasl.oauthbearer.client.secret": REDACTED, "my.custom.secret.thing": REDACTED,
                     "api.password2": REDACTED, "sasl.username": "lasair", "ssl.ca.location": "@file:/x",
                     "error_cb": "<builtin_function_or_method>"}
    cluster = Cluster("rubin", "h:1", {"sasl.password": PASSWORD}, {"token": "tok-123"})
    assert PASSWORD not in repr(cluster) and "tok-123" not in repr(cluster)
    assert "sasl.password" in repr(cluster)


# -- each client gets its own cluster's settings -----------------------------------


class _Recorder:
    """Stands for confluent-kafka's clients: records the config each is made with."""

    made: list[tuple[str, dict]] = []
    existing: set[str] = set()

    def __init__(self, config: dict) -> None:
        self.made.append((type(self).__name__, dict(config)))

    def list_topics(self, topic=None, timeout=None):
        topics = {topic: SimpleNamespace(partitions={0: None, 1: None}, error=None)} if topic in self.existing else {}
        return SimpleNamespace(topics=topics, brokers={1: None})


class FakeConsumer(_Recorder):
    pass


class FakeProducer(_Recorder):
    pass


def _done(result) -> concurrent.futures.Future:
    future = concurrent.futures.Future()
    future.set_result(result)
    return future


class FakeAdmin(_Recorder):
    def describe_configs(self, resources, **kwargs):
        return {resource: _done({}) for resource in resources}

    def create_topics(self, new_topics, **kwargs):
        futures = {}
        for new in new_topics:
            self.existing.add(new.topic)
            futures[new.topic] = _done(None)
        return futures


def test_each_client_gets_only_its_own_clusters_settings(captured, monkeypatch):
    from alert_sidecar.stage.loop import Stage

    monkeypatch.setattr(consumer_module, "Consumer", FakeConsumer)
    monkeypatch.setattr(producer_module, "Producer", FakeProducer)
    monkeypatch.setattr(producer_module, "AdminClient", FakeAdmin)
    monkeypatch.setenv("RUBIN_PASSWORD", PASSWORD)
    _Recorder.made, _Recorder.existing = [], set()
    result = invoke([*TWO_CLUSTERS, "--dead-letter", "kafka://local:9092/dead",
                     "--route", "watch=kafka://rubin/watch"])
    assert result.exit_code == 0, result.output
    stage = Stage(captured["config"])
    try:
        stage.outputs.producers.prepare(True, 2)  # the outputs do not exist: the admin clients create them
    finally:
        stage.pool.close()
    by_bootstrap: dict[str, list[str]] = {}
    for kind, config in _Recorder.made:
        by_bootstrap.setdefault(config["bootstrap.servers"], []).append(kind)
        if config["bootstrap.servers"] == "r1:9094,r2:9094":
            assert config["sasl.password"] == PASSWORD and config["sasl.username"] == "lasair", kind
            assert config["security.protocol"] == "SASL_SSL"
        else:
            assert config["bootstrap.servers"] == "local:9092"
            leaked = {k for k in config if k.startswith(("sasl.", "security."))}
            assert not leaked, (kind, leaked)
            assert PASSWORD not in repr(config.values())
        assert config["client.id"] == "lasair-stage"  # --kafka-config: every cluster
    # The input's consumer, one producer per cluster (the route shares rubin's), admin clients that create topics.
    assert set(by_bootstrap) == {"r1:9094,r2:9094", "local:9092"}
    assert set(by_bootstrap["r1:9094,r2:9094"]) == {"FakeAdmin", "FakeConsumer", "FakeProducer"}
    assert set(by_bootstrap["local:9092"]) == {"FakeAdmin", "FakeProducer"}
    assert [by_bootstrap[b].count("FakeProducer") for b in ("r1:9094,r2:9094", "local:9092")] == [1, 1]


# -- settings that break the promise ------------------------------------------------


INPUT = parse_buffer("kafka://h:1/alerts")


@pytest.mark.parametrize("key, value", [
    ("enable.auto.commit", "true"), ("enable.auto.offset.store", "true"), ("enable.auto.commit", "1"),
])
def test_the_input_refuses_automatic_commits(key, value):
    with pytest.raises(ConfigError, match=f"{key}={value} for the input kafka://h:1/alerts would commit"):
        consumer_config(INPUT, "g", "earliest", {key: value})
    assert consumer_config(INPUT, "g", "earliest", {key: "false"})[key] == "false"


@pytest.mark.parametrize("key, value", [
    ("acks", "1"), ("acks", "0"), ("request.required.acks", "1"), ("enable.idempotence", "false"),
])
def test_outputs_refuse_weaker_acknowledgements(key, value):
    with pytest.raises(ConfigError, match=f"{key}={value} for the outputs on h:1"):
        producer_config("h:1", {key: value})


def test_outputs_take_the_safe_values_given_explicitly():
    assert producer_config("h:1", {"acks": "-1"})["acks"] == "-1"
    assert producer_config("h:1", {"acks": "all", "enable.idempotence": "true"})["enable.idempotence"] == "true"


@pytest.mark.parametrize("setting", [
    "enable.auto.commit=true", "enable.auto.offset.store=true", "acks=1", "acks=0", "enable.idempotence=false",
])
def test_the_sidecar_refuses_unsafe_settings_at_start(setting):
    """The real command: one line, exit 2, before any Kafka client connects (nothing listens on port 1)."""
    result = subprocess.run([sys.executable, "-m", "alert_sidecar.cli", "--in", "kafka://127.0.0.1:1/a",
                             "--out", "kafka://127.0.0.1:1/b", "--worker", "127.0.0.1:1",
                             "--kafka-config", setting], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("alert-sidecar: error:")]
    assert len(errors) == 1 and setting in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_settings_of_an_unnamed_cluster():
    clusters = Clusters(common={"client.id": "x"})
    assert clusters.settings_for(INPUT) == {"client.id": "x"}
    with pytest.raises(ConfigError, match="names cluster 'rubin', which is not defined"):
        clusters.settings_for(parse_buffer("kafka://rubin/a", clusters={"rubin": "h:1"}))


def test_flags_override_the_files_clusters():
    from_file = {"rubin": Cluster("rubin", "old:1", {"sasl.username": "a"}, {"sasl.password": "@env:X"})}
    clusters = parse_clusters(("rubin=new:1",), ("rubin:sasl.username=b",), (), from_file)
    assert clusters.by_name["rubin"].bootstrap == "new:1"
    assert clusters.by_name["rubin"].settings == {"sasl.username": "b"}
    assert from_file["rubin"].bootstrap == "old:1"  # the file's model is left as it was
