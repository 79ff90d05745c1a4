"""--start-from: earliest, latest, a time or an offset, read from the command line into the stage's config."""

from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from alert_sidecar import cli
from alert_sidecar.exceptions import ConfigError
from alert_sidecar.kafka.start import StartAtOffset, StartAtTime, StartFrom, parse_start

MIDNIGHT = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("earliest", StartFrom.EARLIEST),
    ("latest", StartFrom.LATEST),
    ("2026-12-01T00:00Z", StartAtTime(MIDNIGHT)),
    ("2026-12-01T00:00:00+00:00", StartAtTime(MIDNIGHT)),
    ("2026-12-01", StartAtTime(MIDNIGHT)),  # a date alone: its 00:00 UTC
    ("2026-12-01T00:00:00", StartAtTime(MIDNIGHT)),  # no zone: UTC
    ("2026-12-01T01:00:00+01:00", StartAtTime(MIDNIGHT)),
    ("1000", StartAtOffset(1000)),
    ("0", StartAtOffset(0)),
    ("-25", StartAtOffset(25, from_end=True)),
])
def test_what_a_start_can_be(text, expected):
    start = parse_start(text)
    assert start == expected
    if isinstance(start, StartAtTime):
        assert start.ms == 1796083200000  # 2026-12-01T00:00Z in ms since 1970, by `date -d ... +%s`
        assert str(start) == "2026-12-01T00:00:00Z"


def test_a_time_keeps_its_milliseconds():
    assert parse_start("2026-12-01T00:00:00.123Z").ms == 1796083200123
    assert parse_start("2026-12-01T00:00:00.123Z").at == MIDNIGHT + timedelta(milliseconds=123)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "12:00", "2026-12-01T25:00Z", "1.5", "", "earliest!"])
def test_a_malformed_start_says_what_would_do(text):
    with pytest.raises(ConfigError) as raised:
        parse_start(text)
    message = str(raised.value)
    assert message.startswith(f"--start-from {text!r} is not") and "2026-12-01T00:00Z" in message and "-1000" in message


STAGE = ["--in", "kafka://a:1/x", "--out", "kafka://a:1/y", "--worker", "h:1"]


def test_the_stage_is_given_the_start(captured):
    result = CliRunner().invoke(cli.run, [*STAGE, "--start-from", "2026-12-01T00:00Z"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert captured["config"].start_from == StartAtTime(MIDNIGHT)
    result = CliRunner().invoke(cli.run, STAGE, catch_exceptions=False)
    assert captured["config"].start_from is StartFrom.EARLIEST  # the default
    result = CliRunner().invoke(cli.run, STAGE, env={"ALERT_SIDECAR_START_FROM": "-10"}, catch_exceptions=False)
    assert captured["config"].start_from == StartAtOffset(10, from_end=True)


def test_a_malformed_start_is_one_line_and_exit_2(captured):
    result = CliRunner().invoke(cli.run, [*STAGE, "--start-from", "tomorrow"])
    assert result.exit_code == 2 and "config" not in captured
    assert result.output.strip().splitlines() == [
        "alert-sidecar: error: --start-from 'tomorrow' is not earliest, latest, an ISO 8601 time or an offset; "
        "e.g. earliest, latest, 2026-12-01T00:00Z, 2026-12-01T00:00:00+00:00, 2026-12-01, 1000 or -1000 "
        "(-N: N records before the end)"]
