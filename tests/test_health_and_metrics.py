"""The facts a health check and the metrics read, the check's verdict, and the metrics' exact values."""

from __future__ import annotations

import re
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.app.health import default_max_age_s, duration, evaluate
from sync.app.metrics import SyncMetrics
from sync.core.outcomes import RunCounts
from sync.simulator import Fault, FaultKind, SimulatorHandle
from sync.store.health import HealthFacts, RunFacts, read_health
from sync.store.schema import flows, sync_runs
from sync.vendor.client import Backoff
from sync.vocabulary import RunStatus, SyncState, Trigger
from tests.conftest import settings_for
from tests.process import flowsync, flowsync_env

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def run(
    run_id: int, status: RunStatus, ended_minutes_ago: float | None, error: str | None = None, failed: int = 0
) -> RunFacts:
    finished = None if ended_minutes_ago is None else NOW - timedelta(minutes=ended_minutes_ago)
    return RunFacts(run_id, status, NOW - timedelta(hours=5), finished, RunCounts(failed=failed), error)


def facts(latest: RunFacts | None, success: RunFacts | None) -> HealthFacts:
    return HealthFacts(latest, success, dict.fromkeys(SyncState, 0))


@pytest.mark.parametrize(
    ("state", "max_failing", "healthy", "reason"),
    [
        pytest.param(facts(None, None), None, False, "no run has been recorded yet", id="empty"),
        pytest.param(
            facts(run(3, RunStatus.FAILED, 1, "the API refused the account, so the run stopped: -1"), None),
            None,
            False,
            "no run has succeeded yet (latest: run 3 failed: the API refused the account, "
            "so the run stopped: -1)",
            id="never succeeded",
        ),
        pytest.param(
            facts(run(9, RunStatus.OK, 4), run(9, RunStatus.OK, 4)),
            None,
            True,
            "run 9 ok 4 min ago",
            id="fresh",
        ),
        pytest.param(
            facts(run(9, RunStatus.FAILED, 1), run(8, RunStatus.PARTIAL, 14, None, failed=2)),
            None,
            True,
            "run 8 partial 14 min ago, 2 flows failed",
            id="a failed run after a recent success",
        ),
        pytest.param(
            facts(run(9, RunStatus.FAILED, 1), run(8, RunStatus.OK, 16)),
            None,
            False,
            "the latest successful run (8) finished 16 min ago, longer than the 15 min allowed",
            id="too old",
        ),
        pytest.param(
            facts(run(9, RunStatus.PARTIAL, 1), run(9, RunStatus.PARTIAL, 1, failed=4)),
            3,
            False,
            "4 flows failed in run 9, more than the 3 allowed",
            id="too many failing",
        ),
        pytest.param(
            facts(run(9, RunStatus.PARTIAL, 1), run(9, RunStatus.PARTIAL, 1, failed=3)),
            3,
            True,
            "run 9 partial 1 min ago, 3 flows failed",
            id="at the limit",
        ),
    ],
)
def test_the_check_passes_only_on_a_recent_success_with_few_enough_failing_flows(
    state: HealthFacts, max_failing: int | None, healthy: bool, reason: str
) -> None:
    """A table of states and the one line the check prints for each."""
    verdict = evaluate(state, now=NOW, max_age_s=900, max_failing=max_failing)
    assert (verdict.healthy, verdict.reason) == (healthy, reason)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (303, "5 min 3 s"),
        (7500, "2 h 5 min"),
        (7200, "2 h"),
        (90000, "1 d 1 h"),
    ],
)
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    """Whole units, largest two."""
    assert duration(seconds) == text


def sync_runs_row(engine: Engine, run_id: int) -> sa.Row[tuple[object, ...]]:
    with engine.connect() as connection:
        return connection.execute(sa.select(sync_runs).where(sync_runs.c.id == run_id)).one()


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            if metric.name == name and metric.labels == labels:
                return float(metric.value)
    raise AssertionError(f"{name}{labels} is not in the metrics")


def test_metrics_after_a_run_equal_its_sync_runs_row_and_the_flows_table(
    engine: Engine, sim: SimulatorHandle, database_url: str, tmp_path: Path
) -> None:
    """Every gauge is read back from the database: the run's row, the latest success, flows by state."""
    settings = settings_for(sim, database_url, "1-20")
    first = jobs.sync_once(
        settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST
    )
    sim.faults.persist(4, Fault.html())
    sim.faults.persist(7, Fault(FaultKind.NULL_DATA))  # the API says it is gone
    sim.faults.set_account(Fault.api("-2"))
    refused = jobs.sync_once(
        settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST
    )
    sim.faults.set_account(None)
    second = jobs.sync_once(
        settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST
    )
    assert (first.status, refused.status, second.status) == ("ok", "failed", "partial")
    metrics = SyncMetrics()
    metrics.observe(read_health(engine, second.run_id))
    path = tmp_path / "flowsync.prom"
    metrics.write(path)
    text = path.read_text()
    row = sync_runs_row(engine, second.run_id)
    assert sample(text, "flowsync_last_run_timestamp_seconds") == row.finished_at.timestamp()
    assert sample(text, "flowsync_last_success_timestamp_seconds") == row.finished_at.timestamp()
    assert (
        sample(text, "flowsync_last_run_duration_seconds")
        == (row.finished_at - row.started_at).total_seconds()
    )
    for outcome in ("created", "changed", "unchanged", "deleted", "failed"):
        assert sample(text, "flowsync_last_run_flows", outcome=outcome) == getattr(row, f"flows_{outcome}")
    with engine.connect() as connection:
        states: dict[str, int] = dict(
            connection.execute(
                sa.select(flows.c.sync_state, sa.func.count()).group_by(flows.c.sync_state)
            ).all()
        )
    assert states == {"ok": 18, "error": 1, "deleted": 1}
    for state in ("ok", "error", "deleted"):
        assert sample(text, "flowsync_flows", state=state) == states[state]


def test_the_latest_success_survives_a_failed_run(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """After a refused run the last-success gauge still says when the last good run ended."""
    settings = settings_for(sim, database_url, "1-3")
    good = jobs.sync_once(settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST)
    sim.faults.set_account(Fault.api("-1"))
    bad = jobs.sync_once(settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST)
    state = read_health(engine, bad.run_id)
    assert state.latest_run is not None
    assert state.latest_success is not None
    assert (state.latest_run.run_id, state.latest_run.status) == (bad.run_id, "failed")
    assert state.latest_success.run_id == good.run_id
    assert state.latest_success.finished_at == sync_runs_row(engine, good.run_id).finished_at
    assert state.account_refused
    metrics = SyncMetrics()
    metrics.observe(state)
    path = Path("flowsync.prom")
    metrics.write(path)
    assert sample(path.read_text(), "flowsync_last_run_account_refused") == 1
    assert not read_health(engine, good.run_id).account_refused


def test_the_worker_serves_its_metrics_and_counts_runs_by_status() -> None:
    """`/metrics` answers from a background thread; every status is listed, zeros included."""
    metrics = SyncMetrics(count_runs=True)
    server = metrics.serve("127.0.0.1", 0)
    try:
        metrics.observe(facts(run(1, RunStatus.PARTIAL, 0), run(1, RunStatus.PARTIAL, 0)))
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        server.close()
    assert sample(text, "flowsync_runs_total", status="partial") == 1
    assert sample(text, "flowsync_runs_total", status="ok") == 0
    assert sample(text, "flowsync_runs_total", status="failed") == 0
    assert sample(text, "flowsync_flows", state="deleted") == 0


@pytest.mark.parametrize(
    ("cron", "interval_s", "expected_s"),
    [
        pytest.param(None, 300, 900, id="three intervals"),
        pytest.param("*/10 * * * *", 300, 1800, id="every ten minutes"),
        pytest.param("0 9 * * 1-5", 300, 3 * 3 * 86400, id="weekdays: the weekend is the longest gap"),
    ],
)
def test_the_default_max_age_is_three_intervals_of_the_schedule(
    cron: str | None, interval_s: float, expected_s: float
) -> None:
    """An interval counts thrice; a cron schedule by its longest gap between runs."""
    assert default_max_age_s(interval_s, cron, NOW) == expected_s


def check(database_url: str, *args: str, **env: str) -> tuple[int, str]:
    result = flowsync("check", *args, env=flowsync_env(None, database_url, None, **env))
    assert result.stderr == "" or result.returncode == 2, result.stderr
    return result.returncode, (result.stdout + result.stderr).strip()


def test_check_says_why_it_passes_or_fails(engine: Engine, sim: SimulatorHandle, database_url: str) -> None:
    """The real command on each database: 1 before any success, 0 after one, 1 when too old or failing."""
    assert check(database_url) == (1, "unhealthy: no run has been recorded yet")
    settings = settings_for(sim, database_url, "1-5")
    sim.faults.persist(3, Fault.html())
    report = jobs.sync_once(
        settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST
    )
    code, line = check(database_url)
    assert code == 0
    assert re.fullmatch(rf"healthy: run {report.run_id} partial \d+ s ago, 1 flows failed", line), line
    assert check(database_url, "--max-failing", "1")[0] == 0
    assert check(database_url, "--max-failing", "0") == (
        1,
        f"unhealthy: 1 flows failed in run {report.run_id}, more than the 0 allowed",
    )
    code, line = check(database_url, "--max-age", "0.000001")
    assert code == 1
    assert line.startswith(f"unhealthy: the latest successful run ({report.run_id}) finished ")


def test_check_without_a_usable_database_exits_2(tmp_path: Path, server_database_url: str) -> None:
    """Missing file, database not upgraded, server unreachable: 2, and the line says which."""
    code, line = check(f"sqlite:///{tmp_path / 'missing.db'}")
    assert code == 2
    assert "no usable database" in line
    assert "run `flowsync db upgrade`" in line
    assert not (tmp_path / "missing.db").exists(), "the check must not create the database"
    code, line = check(server_database_url)
    assert code == 2
    assert "has no flowsync tables yet" in line
    unreachable = sa.make_url(server_database_url).set(host="127.0.0.1", port=1)
    code, line = check(unreachable.render_as_string(hide_password=False))
    assert code == 2
    assert "no usable database" in line
