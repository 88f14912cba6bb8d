"""The text log: one record a line, vendor text escaped, the secret masked, libraries kept quiet."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path

import pytest

from sync import __version__
from sync.cli.logs import configure_logging
from sync.simulator import Fault, SimulatorHandle
from tests.process import flowsync, flowsync_env

SECRET = "s3cret-Value-42"
RECORD = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<logger>[\w.]+): ", re.MULTILINE
)
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
log = logging.getLogger("sync.test_logs")


def logged(capsys: pytest.CaptureFixture[str], message: str, *args: object) -> str:
    """What one WARNING record with `message % args` writes to stderr."""
    configure_logging(0, secrets=[SECRET])
    capsys.readouterr()
    log.warning(message, *args)
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        pytest.param("plain reason", "plain reason", id="plain"),
        pytest.param(
            "[/bold] [link=http://x.example]x[/link]", "[/bold] [link=http://x.example]x[/link]", id="markup"
        ),
        pytest.param("\x1b[2J\x1b]0;pwned\x07", r"\x1b[2J\x1b]0;pwned\x07", id="clear-screen-and-title"),
        pytest.param(
            "fine\r2030-01-01T00:00:00Z INFO sync: forged",
            r"fine\r2030-01-01T00:00:00Z INFO sync: forged",
            id="cr-overwrites",
        ),
        pytest.param(
            "fine\n2030-01-01T00:00:00Z INFO sync: forged",
            r"fine\n2030-01-01T00:00:00Z INFO sync: forged",
            id="lf-forges-a-line",
        ),
        pytest.param("\u202egnp.exe \u2066x\u2069", r"\u202egnp.exe \u2066x\u2069", id="bidi"),
        pytest.param(
            "del\x7f csi\x9b nel\x85 ls\u2028", r"del\x7f csi\x9b nel\x85 ls\u2028", id="del-c1-separator"
        ),
    ],
)
def test_a_vendor_string_stays_on_its_line_escaped(
    capsys: pytest.CaptureFixture[str], reason: str, shown: str
) -> None:
    """Whatever a reason holds, the record is one line that starts like a record, with escapes visible."""
    output = logged(capsys, "flow %d failed: %s", 7, reason)
    assert output.count("\n") == 1
    assert RECORD.match(output)
    assert output.rstrip("\n").endswith(f"flow 7 failed: {shown}")
    assert not UNSAFE.search(output)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(f"echo {SECRET} back", id="whole"),
        pytest.param(f"split {SECRET[:4]}\x1b{SECRET[4:]} by an escape", id="split-by-esc"),
        pytest.param(
            f"split {SECRET[:2]}\u200b{SECRET[2:9]}\u202e\u202c{SECRET[9:]} twice", id="split-by-invisibles"
        ),
        pytest.param(f"twice {SECRET}{SECRET[:5]}\x00{SECRET[5:]}", id="whole-then-split"),
    ],
)
def test_the_secret_is_masked_even_when_unsafe_characters_split_it(
    capsys: pytest.CaptureFixture[str], message: str
) -> None:
    """The secret is masked before escaping, also when a terminal would have hidden what splits it."""
    output = logged(capsys, "%s", message)
    assert "***" in output
    visible = re.sub(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4})", "", output)
    assert SECRET not in visible
    assert SECRET[:5] not in output


def test_a_secret_holding_a_character_the_log_escapes_is_still_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Masking sees the message as logged: a secret with a tab is found before the tab becomes `\\t`."""
    configure_logging(0, secrets=["tab\tsecret"])
    capsys.readouterr()
    log.warning("got tab\tsecret back")
    output = capsys.readouterr().err
    assert output.rstrip("\n").endswith("got *** back")


def test_a_traceback_is_indented_under_its_record_and_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """Lines after a record (a traceback) are indented and escaped: only records start at column 0."""
    configure_logging(0)
    capsys.readouterr()
    try:
        raise ValueError("reason \x1b[2J\n2030-01-01T00:00:00Z INFO sync: forged")
    except ValueError:
        log.exception("run failed unexpectedly")
    lines = capsys.readouterr().err.splitlines()
    assert RECORD.match(lines[0])
    assert lines[0].endswith("run failed unexpectedly")
    assert len(lines) > 2
    assert all(line.startswith("  ") for line in lines[1:])
    assert any(r"\x1b[2J" in line for line in lines)
    assert not any(UNSAFE.search(line) for line in lines)


def test_library_chatter_stays_out_and_library_warnings_stay_in(capsys: pytest.CaptureFixture[str]) -> None:
    """Even at -v, alembic's step-by-step INFO and asyncio's DEBUG are dropped; their warnings show."""
    configure_logging(1)
    capsys.readouterr()
    logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001")
    logging.getLogger("asyncio").debug("Using selector: EpollSelector")
    logging.getLogger("alembic").warning("a real problem")
    logging.getLogger("sync.test_logs").debug("our own detail")
    output = capsys.readouterr().err
    assert "Running upgrade" not in output
    assert "Using selector" not in output
    assert "a real problem" in output
    assert "our own detail" in output


def test_only_flowsync_speaks_in_a_verbose_run(sim: SimulatorHandle, database_url: str) -> None:
    """`-v db upgrade` and `-v sync` log only flowsync's own records: no library chatter."""
    env = flowsync_env(sim, database_url, "1-3")
    speakers = set()
    for args in (["-v", "db", "upgrade"], ["-v", "sync"]):
        result = flowsync(*args, env=env)
        assert result.returncode == 0, result.stderr
        speakers |= {record["logger"] for record in RECORD.finditer(result.stderr)}
    assert "sync.pipeline.loop" in speakers
    assert {speaker.split(".")[0] for speaker in speakers} == {"sync"}


REQUEST_LINE = re.compile(
    r" DEBUG sync\.vendor\.client: (?P<method>GET) (?P<path>/\S*) (?P<status>.+?) "
    r"\(attempt (?P<attempt>\d+), (?P<duration_ms>\d+(?:\.\d+)?) ms\)$",
    re.MULTILINE,
)


def request_records(stderr: str, log_format: str) -> list[dict[str, str]]:
    """The request records of a `-v` run's stderr, each as its fields in text."""
    if log_format == "text":
        return [match.groupdict() for match in REQUEST_LINE.finditer(stderr)]
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [
        {key: str(record[key]) for key in ("method", "path", "status", "attempt", "duration_ms")}
        for record in records
        if record["logger"] == "sync.vendor.client" and "attempt" in record
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_each_request_is_logged_once_at_v_without_a_header_value(
    sim: SimulatorHandle, tmp_path: Path, log_format: str
) -> None:
    """`-v sync` logs every request once: method, path, status, attempt, duration; no header value."""
    env = flowsync_env(sim, f"sqlite:///{tmp_path / 'flowsync.db'}", "1-5", FLOWSYNC_LOG_FORMAT=log_format)
    assert flowsync("db", "upgrade", env=env).returncode == 0
    sim.faults.queue(2, Fault.http(500))
    sim.faults.queue(3, Fault.api("-16"))
    sim.faults.persist(4, Fault.http(503))
    started = int(time.time())
    result = flowsync("-v", "sync", env=env)
    ended = int(time.time())
    assert result.returncode == 1, result.stderr  # flow 4 fails
    records = request_records(result.stderr, log_format)
    assert len(records) == sum(sim.stats.requests.values()) == 8
    attempts: dict[str, list[tuple[str, str]]] = {}
    for record in records:
        assert record["method"] == "GET"
        assert float(record["duration_ms"]) >= 0
        attempts.setdefault(record["path"], []).append((record["attempt"], record["status"]))
    path = "/otp/flow/details/{}".format
    assert attempts[path(1)] == [("1", "200")]
    assert attempts[path(2)] == [("1", "500"), ("2", "200")]
    assert attempts[path(3)] == [("1", "200"), ("2", "200")]  # -16 is an HTTP 200, then re-signed
    assert attempts[path(4)] == [("1", "503"), ("2", "503")]
    assert attempts[path(5)] == [("1", "200")]
    # Never a header value: not the Sign, the key, the timestamp, nor anything of the secret.
    config = sim.config
    signs = {
        hashlib.md5(f"{config.api_key}{config.api_secret}{t}".encode()).hexdigest()
        for t in range(started - 120, ended + 120)
    }
    assert config.api_secret not in result.stderr
    assert config.api_key not in result.stderr
    assert not [sign for sign in signs if sign[:8] in result.stderr.lower()]
    assert not [t for t in range(started - 5, ended + 5) if str(t) in result.stderr]
    assert "application/json;charset" not in result.stderr
    assert f"flowsync/{__version__}" not in result.stderr


def test_requests_are_not_logged_without_v(sim: SimulatorHandle, tmp_path: Path) -> None:
    """At the default level a run writes its one summary line, not a line per request."""
    env = flowsync_env(sim, f"sqlite:///{tmp_path / 'flowsync.db'}", "1-5")
    assert flowsync("db", "upgrade", env=env).returncode == 0
    result = flowsync("sync", env=env)
    assert result.returncode == 0, result.stderr
    assert "sync.vendor.client" not in result.stderr
