"""Operating flowsync unattended, through the real command: metrics, JSON logs, `config`, `db upgrade`."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from sync.cli.logs import configure_logging
from sync.simulator import Fault, SimulatorHandle
from sync.store.database import create_engine
from sync.store.run_lock import run_lock
from sync.store.schema import sync_runs
from tests.process import flowsync, flowsync_env, start_flowsync, wait_for

SECRET = "an-api-secret-of-some-length"


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} missing")


def latest_run(engine: Engine) -> sa.Row[tuple[object, ...]]:
    with engine.connect() as connection:
        return connection.execute(sa.select(sync_runs).order_by(sync_runs.c.id.desc()).limit(1)).one()


def test_sync_writes_the_metrics_file_after_each_run(
    engine: Engine, sim: SimulatorHandle, database_url: str, tmp_path: Path
) -> None:
    """`flowsync sync --metrics-file` leaves a complete text-format file matching the run's row."""
    path = tmp_path / "textfile" / "flowsync.prom"
    path.parent.mkdir()
    env = flowsync_env(sim, database_url, "1-6")
    sim.faults.persist(2, Fault.html())
    result = flowsync("sync", "--metrics-file", str(path), env=env)
    assert result.returncode == 1, result.stderr
    row = latest_run(engine)
    text = path.read_text()
    assert metric(text, "flowsync_last_run_timestamp_seconds") == row.finished_at.timestamp()
    assert metric(text, "flowsync_last_run_flows", outcome="failed") == 1
    assert metric(text, "flowsync_last_run_flows", outcome="created") == 5
    assert metric(text, "flowsync_flows", state="ok") == 5
    assert [p.name for p in path.parent.iterdir()] == ["flowsync.prom"], "no temporary file left behind"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def test_the_worker_serves_metrics_while_a_run_is_in_progress_and_after(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """`/metrics` answers during the first run (nothing counted yet) and counts the run once it ends."""
    port = free_port()
    sim.faults.set_random(1.0, [Fault.delay(0.2)])
    env = flowsync_env(sim, database_url, "1-20", FLOWSYNC_CONCURRENCY="1", FLOWSYNC_INTERVAL="3600")
    worker = start_flowsync("run", "--metrics-port", str(port), env=env)
    try:
        wait_for(lambda: scrape(port) is not None, "the worker to serve /metrics")
        during = scrape(port)
        assert during is not None
        assert metric(during, "flowsync_runs_total", status="ok") == 0
        sim.faults.set_random(0.0, [])
        wait_for(
            lambda: metric(scrape(port) or "", "flowsync_runs_total", status="ok") == 1, "the run to end"
        )
        after = scrape(port) or ""
        row = latest_run(engine)
        assert metric(after, "flowsync_last_run_flows", outcome="created") == row.flows_created
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
    finally:
        worker.kill()
    assert scrape(port) is None, "the endpoint closes with the worker"


def test_json_logs_are_one_object_a_line_with_the_run_and_its_counts(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """Every stderr line parses as JSON; the run's summary carries run_id, counts, status and time."""
    env = flowsync_env(sim, database_url, "1-4")
    result = flowsync("sync", "--log-format", "json", env=env)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    (summary,) = [r for r in records if r.get("run_id") is not None and "status" in r]
    assert summary["level"] == "INFO"
    assert summary["logger"] == "sync.pipeline.loop"
    assert summary["time"].endswith("Z")
    assert summary["counts"] == {
        "requested": 4,
        "created": 4,
        "changed": 0,
        "unchanged": 0,
        "deleted": 0,
        "failed": 0,
    }
    assert summary["message"].startswith(f"run {summary['run_id']} ok in ")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_secret_is_masked_in_both_log_formats(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret that reaches a message, an extra field or a traceback is masked, whatever the format."""
    configure_logging(0, secrets=[SECRET], log_format=log_format)
    log = logging.getLogger("sync.test")
    log.warning("echoed %s back", SECRET, extra={"detail": {"said": f"x{SECRET}y"}})
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("unexpected")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "***" in err
    if log_format == "json":
        lines = err.splitlines()
        assert len(lines) == 2, "a traceback is one field of one line"
        assert json.loads(lines[1])["exc_info"].startswith("Traceback")


def test_config_shows_each_setting_and_where_it_came_from(tmp_path: Path) -> None:
    """Flag, environment, file and default named per setting; secrets and passwords never shown."""
    (tmp_path / "flowsync.toml").write_text('retries = 5\nflow_ids = "1-3"\n')
    env = flowsync_env(
        None,
        "postgresql://writer:pa55w0rd@db.internal/flowsync",
        None,
        FLOWSYNC_API_SECRET=SECRET,
        FLOWSYNC_NOTIFY_URL="https://hooks.example.com/services/T0K3N",
    )
    result = flowsync("config", "--concurrency", "16", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert shown["concurrency"] == ["16", "--concurrency"]
    assert shown["retries"] == ["5", "retries", "in", "flowsync.toml"]
    assert shown["timeout"] == ["10", "default"]
    assert shown["api_secret"] == ["set", "FLOWSYNC_API_SECRET"]
    assert shown["api_key"] == ["not", "set", "default"]
    assert shown["notify_url"] == ["https://hooks.example.com/...", "FLOWSYNC_NOTIFY_URL"]
    for hidden in (SECRET, "pa55w0rd", "T0K3N"):
        assert hidden not in result.stdout + result.stderr


def test_db_upgrade_says_it_waits_for_a_run_in_progress(database_url: str) -> None:
    """While a run holds the lock, `db upgrade` says it is waiting, then upgrades once the run ends."""
    engine = create_engine(database_url)
    try:
        env = flowsync_env(None, database_url, None)
        with run_lock(engine):
            upgrade = start_flowsync("db", "upgrade", env=env)
            said: list[str] = []
            reader = threading.Thread(target=lambda: said.extend(upgrade.stderr or ()), daemon=True)
            reader.start()
            wait_for(lambda: any("waiting up to" in line for line in said), "db upgrade to say it waits")
            assert upgrade.poll() is None, "still waiting while the lock is held"
        upgrade.wait(timeout=60)
        reader.join(timeout=60)
        for pipe in (upgrade.stdout, upgrade.stderr):
            if pipe is not None:
                pipe.close()
        assert upgrade.returncode == 0, said
        assert any("a sync holds the run lock; waiting up to 60 s for it to finish" in line for line in said)
        assert "created flowsync's tables" in said[-1]
    finally:
        engine.dispose()


def test_quiet_db_upgrade_prints_nothing(database_url: str) -> None:
    """`-q db upgrade`: the exit status says it; a cron job's mail stays empty."""
    result = flowsync("-q", "db", "upgrade", env=flowsync_env(None, database_url, None))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("command", [["fake-api"], ["demo"], ["status"], ["db", "upgrade"], ["check"]])
def test_every_command_takes_log_format_and_refuses_a_bad_one(command: list[str], tmp_path: Path) -> None:
    """`--log-format` is an option of every command; an invalid value is refused naming the flag."""
    result = flowsync(*command, "--log-format", "xml", env=flowsync_env(None, None, None), cwd=tmp_path)
    assert result.returncode == 2
    assert "--log-format" in result.stderr
    assert list(tmp_path.iterdir()) == [], "refused before anything was done"
