"""Options reach the stage from flags, environment variables and a config file, in that precedence."""

import pytest
from click.testing import CliRunner

from alert_sidecar import cli


def invoke(args, env=None):
    return CliRunner().invoke(cli.run, args, env=env or {}, catch_exceptions=False)


def test_flags_make_the_stage_config(captured):
    result = invoke(["--in", "kafka://a:1,a:2/alerts", "--out", "kafka://b:1/bright", "--worker", "w1:5",
                     "--worker", "w2:5", "--route", "wl=kafka://c:1/watch", "--kafka-config", "acks=all",
                     "--max-retries", "2"])
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert config.input.bootstrap == "a:1,a:2" and config.output.topic == "bright"
    assert [str(w) for w in config.workers] == ["w1:5", "w2:5"]

    assert config.routes["wl"].uri == "kafka://c:1/watch"
    assert config.dead_letter.uri == "kafka://a:1,a:2/alerts.dead-letter"
    assert config.group == "alert-sidecar.alerts.bright"
    assert config.clusters.common == {"acks": "all"}
    assert config.retry.max_retries == 2


def test_a_port_range_names_a_worker_served_by_several_processes(captured):
    result = invoke(["--in", "kafka://a:1/x", "--out", "kafka://a:1/y", "--worker", "localhost:50051-50054"])
    assert result.exit_code == 0, result.output
    assert [str(w) for w in captured["config"].workers] == [f"localhost:{p}" for p in range(50051, 50055)]
    result = CliRunner().invoke(cli.run, ["--in", "kafka://a:1/x", "--out", "kafka://a:1/y",
                                          "--worker", "localhost:50054-50051"])
    assert result.exit_code == 2 and "must go up" in result.output

def test_environment_and_config_file(captured, tmp_path):
    path = tmp_path / "stage.toml"
    path.write_text('in = "kafka://file:1/a"\nout = "kafka://file:1/b"\nworker = ["file:9"]\nbatch-size = 7\n'
                    'group = "from-file"\n')
    env = {"ALERT_SIDECAR_OUT": "kafka://env:1/b", "ALERT_SIDECAR_WORKER": "env:1 env:2"}
    result = invoke(["--config", str(path), "--group", "from-flag"], env=env)
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert config.input.uri == "kafka://file:1/a"  # only in the file
    assert config.output.uri == "kafka://env:1/b"  # environment beats file
    assert [str(w) for w in config.workers] == ["env:1", "env:2"]
    assert config.group == "from-flag"  # flag beats file
    assert config.batch_size == 7


def test_worker_command_after_double_dash(captured):
    result = invoke(["--in", "kafka://a:1/x", "--out", "kafka://a:1/y", "--worker-processes", "3", "--",
                     "python", "w.py", "--flag"])
    assert result.exit_code == 0, result.output
    supervisor = captured["supervisor"]
    assert [p.command for p in supervisor.processes] == [["python", "w.py", "--flag"]] * 3
    assert [w.port for w in captured["config"].workers] == supervisor.ports
    assert len(set(supervisor.ports)) == 3
    assert {w.target for w in captured["config"].workers} == {f"127.0.0.1:{p}" for p in supervisor.ports}


@pytest.mark.parametrize("args, says", [
    (["--in", "kafka://a:1/x", "--out", "kafka://a:1/y", "--worker", "nohostport"], "not HOST:PORT"),
    (["--in", "kafka://a:1/x", "--out", "kafka://a:1/y", "--worker", "h:1", "--", "python", "w.py"], "not both"),
    (["--in", "kafka://a:1/x", "--out", "kafka://a:1/y", "--worker", "h:1", "--route", "x"], "not KEY=VALUE"),
])
def test_mistakes_are_one_line(captured, args, says):
    result = CliRunner().invoke(cli.run, args)
    assert result.exit_code == 2
    assert says in result.output and "Traceback" not in result.output


def test_config_file_errors(tmp_path):
    result = CliRunner().invoke(cli.run, ["--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.parametrize("given, protocol, expected", [
    ("localhost:50051", None, ["localhost:50051"]),
    ("localhost:7000-7002", None, ["localhost:7000", "localhost:7001", "localhost:7002"]),
    ("http://127.0.0.1:8080", None, ["http://127.0.0.1:8080"]),
    ("http://127.0.0.1:8080-8081", None, ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]),
    ("127.0.0.1:8080", "connect", ["http://127.0.0.1:8080"]),
])
def test_worker_addresses_name_their_protocol(given, protocol, expected):
    from alert_sidecar.workers.address import Protocol, parse_worker_addresses

    addresses = parse_worker_addresses(given, Protocol(protocol) if protocol else None)
    assert [str(a) for a in addresses] == expected
    assert {a.protocol for a in addresses} == {Protocol.CONNECT if "http" in expected[0] else Protocol.GRPC}


@pytest.mark.parametrize("given, protocol, says", [
    ("grpc://h:1", None, "only http:// or https://"),
    ("http://h:1", "grpc", "--worker-protocol says grpc"),
    ("h:9-3", None, "must go up"),
    ("http://nohost", None, "is not HOST:PORT"),
])
def test_bad_worker_addresses_say_why(given, protocol, says):
    from alert_sidecar.exceptions import ConfigError
    from alert_sidecar.workers.address import Protocol, parse_worker_addresses

    with pytest.raises(ConfigError, match=says):
        parse_worker_addresses(given, Protocol(protocol) if protocol else None)


def test_the_command_line_shows_the_stage_defaults(captured):
    """Defaults live once, in StageConfig and RetryPolicy: a run with no setting gets exactly them."""
    from alert_sidecar.stage.config import StageConfig
    from alert_sidecar.stage.verdicts import RetryPolicy

    result = invoke(["--in", "kafka://a:1/x", "--out", "kafka://a:1/y", "--worker", "h:1"])
    assert result.exit_code == 0, result.output
    config = captured["config"]
    bare = StageConfig(input=config.input, output=config.output, group=config.group, workers=config.workers,
                       dead_letter=config.dead_letter)
    assert config == bare
    assert config.retry == RetryPolicy()
