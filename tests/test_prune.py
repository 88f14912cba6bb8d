"""`flowsync prune`: old error events and the runs nothing refers to go; the audit trail stays.

A scripted history of eight daily runs is played against the simulator with a clock set in
the past, on every backend; the prune is then checked row by row against what the script
implies, and the analyst layer against an independent replay of what is left
(`tests/replay.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.app.settings import Settings
from sync.core.instants import parse_instant
from sync.errors import LockHeld
from sync.simulator import Fault, FaultKind, SimulatorConfig, SimulatorHandle, running_simulator
from sync.store.prune import PruneCounts, prune
from sync.store.run_lock import run_lock
from sync.store.schema import (
    flow_changes,
    flow_history,
    flow_version_nodes,
    flow_versions,
    flows,
    sync_runs,
)
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger
from tests.conftest import settings_for
from tests.process import flowsync, flowsync_env
from tests.replay import replayed, stored

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)
START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # noon of day 0; the cut-off is midnight of day 6
CUTOFF = datetime(2026, 6, 7, tzinfo=UTC)


def node(waiting_time: int, status: int = 1) -> dict[str, Any]:
    return {"waitingTime": waiting_time, "status": status, "channel": "sms", "channelCut": 0}


FLOWS = [
    {"flowId": 1, "name": "Login OTP", "flow": [node(30), node(60, 2)]},
    {"flowId": 2, "name": "Signup OTP", "flow": [node(45)]},
    {"flowId": 3, "name": "Payment", "flow": [node(90, 2)]},
    {"flowId": 4, "name": "Refused", "flow": [node(15)]},
]


@dataclass
class Clock:
    """Day `day` at noon, a microsecond later at each call, so events keep their order."""

    day: int = 0
    ticks: int = field(default=0)

    def __call__(self) -> datetime:
        self.ticks += 1
        return START + timedelta(days=self.day, microseconds=self.ticks)


@pytest.fixture
def scripted() -> Iterator[SimulatorHandle]:
    with running_simulator(SimulatorConfig(flow_count=0)) as handle:
        for flow in FLOWS:
            handle.catalog.put(flow)
        yield handle


def play(sim: SimulatorHandle, settings: Settings, engine: Engine) -> None:
    """Nine runs, one a day. Run 1 creates the flows; 2 changes nothing; in 3 flow 1 fails once;
    from 4 on flow 4 fails at every fetch; 5 is refused for the account; 6 changes flow 2; 7 is
    the first after the cut-off; 8 deletes flow 3; 9 restores it."""
    clock = Clock()

    def run(day: int) -> None:
        clock.day = day
        jobs.sync_once(
            settings, settings.require_api(), engine, triggered_by=Trigger.SCHEDULE, backoff=FAST, clock=clock
        )

    run(0)
    run(1)
    sim.faults.persist(1, Fault.html())
    run(2)
    sim.faults.persist(1, None)
    sim.faults.persist(4, Fault.html())
    run(3)
    sim.faults.set_account(Fault.api("-1"))
    run(4)
    sim.faults.set_account(None)
    sim.catalog.put({**FLOWS[1], "name": "Signup OTP v2"})
    run(5)
    run(6)
    sim.faults.persist(3, Fault(FaultKind.NULL_DATA))
    run(7)
    sim.faults.persist(3, None)
    run(8)


def table(engine: Engine, source: sa.Table, *order: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(source).order_by(*order))]


def everything(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    return {
        "flow_history": table(engine, flow_history, "id"),
        "sync_runs": table(engine, sync_runs, "id"),
        "flows": table(engine, flows, "flow_id"),
        "flow_versions": table(engine, flow_versions, "flow_id", "version_no"),
        "flow_version_nodes": table(engine, flow_version_nodes, "flow_id", "version_no", "position"),
        "flow_changes": table(engine, flow_changes, "id"),
    }


def events(engine: Engine) -> list[tuple[int, int | None, str]]:
    """(run, flow, event) of every history row, in order."""
    return [(row["run_id"], row["flow_id"], row["event"]) for row in table(engine, flow_history, "id")]


EVENTS_PLAYED = [
    (1, 1, "created"),
    (1, 2, "created"),
    (1, 3, "created"),
    (1, 4, "created"),
    (3, 1, "error"),
    (4, 4, "error"),
    (5, None, "error"),
    (6, 2, "changed"),
    (6, 4, "error"),
    (7, 4, "error"),
    (8, 3, "deleted"),
    (8, 4, "error"),
    (9, 3, "restored"),
    (9, 4, "error"),
]
# The errors before the cut-off go, but for the first of flow 4's current streak (run 4); runs 2, 3
# and 5 are left with nothing; run 6 keeps its change.
EVENTS_KEPT = [e for e in EVENTS_PLAYED if e not in ((3, 1, "error"), (5, None, "error"), (6, 4, "error"))]
RUNS_KEPT = [1, 4, 6, 7, 8, 9]


@pytest.mark.parametrize("batch_size", [5000, 1])
def test_prune_deletes_exactly_the_old_errors_and_unreferenced_runs(
    engine: Engine, scripted: SimulatorHandle, database_url: str, batch_size: int
) -> None:
    """Errors before the cut-off and runs left without events go; every other row stays as it was."""
    play(scripted, settings_for(scripted, database_url, "1-4"), engine)
    assert events(engine) == EVENTS_PLAYED
    before = everything(engine)

    assert prune(engine, CUTOFF, dry_run=True) == PruneCounts(flow_history=3, sync_runs=3)
    assert everything(engine) == before, "a dry run deletes nothing"

    assert prune(engine, CUTOFF, batch_size=batch_size) == PruneCounts(flow_history=3, sync_runs=3)
    after = everything(engine)
    assert events(engine) == EVENTS_KEPT
    assert [row for row in before["flow_history"] if row["event"] != "error"] == [
        row for row in after["flow_history"] if row["event"] != "error"
    ], "configuration events are never touched"
    assert [run["id"] for run in after["sync_runs"]] == RUNS_KEPT
    assert [run for run in before["sync_runs"] if run["id"] in RUNS_KEPT] == after["sync_runs"]
    for name in ("flows", "flow_versions", "flow_version_nodes", "flow_changes"):
        assert after[name] == before[name], f"{name} is left as it was"

    assert prune(engine, CUTOFF) == PruneCounts(), "a second prune finds nothing more"


def test_the_analyst_layer_still_replays_and_streaks_keep_their_whole_length(
    engine: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """After a prune, versions and changes are what the remaining history replays to; a failing
    flow's streak still counts the failures whose error events were pruned."""
    play(scripted, settings_for(scripted, database_url, "1-4"), engine)
    with engine.connect() as connection:
        before = replayed(connection)
        assert stored(connection) == before
    prune(engine, CUTOFF)
    with engine.connect() as connection:
        expected, actual = replayed(connection), stored(connection)
    assert (actual.versions, actual.version_nodes, actual.changes) == (
        expected.versions,
        expected.version_nodes,
        expected.changes,
    )
    assert (actual.versions, actual.changes) == (before.versions, before.changes)
    failing_since, failures, kind, code = actual.streaks[4]
    assert failing_since is not None
    assert (failing_since.date(), failures) == ((START + timedelta(days=3)).date(), 5)
    assert actual.streaks == before.streaks
    # The streak's first and last events stay: what flow_history says of it is still true, but for
    # the count of failures, which is the whole streak's.
    assert {k: v for k, v in expected.streaks.items() if k != 4} == {
        k: v for k, v in actual.streaks.items() if k != 4
    }
    assert expected.streaks[4] == (failing_since, 4, kind, code), "four of the five failures are left"


def test_the_latest_run_the_latest_success_and_a_running_run_are_kept(engine: Engine) -> None:
    """However old, the latest run, the latest successful one and a run still marked running stay,
    with their error events; an older run with only errors goes."""
    day = timedelta(days=1)
    rows = [  # id, status, finished; each run has one error event
        (1, "partial", START),
        (2, "running", None),
        (3, "partial", START + day),
        (4, "failed", START + 2 * day),
    ]
    with engine.begin() as connection:
        for run_id, status, finished in rows:
            connection.execute(
                sync_runs.insert().values(
                    id=run_id, started_at=START, finished_at=finished, triggered_by="schedule", status=status
                )
            )
            connection.execute(
                flow_history.insert().values(
                    run_id=run_id,
                    flow_id=9,
                    occurred_at=START,
                    event="error",
                    error_kind="api",
                    error_code="-22",
                )
            )
    assert prune(engine, START + 30 * day) == PruneCounts(flow_history=1, sync_runs=1)
    assert [run["id"] for run in table(engine, sync_runs, "id")] == [2, 3, 4]
    assert [row["run_id"] for row in table(engine, flow_history, "id")] == [2, 3, 4]


def test_a_streak_keeps_its_first_and_last_error_events(engine: Engine) -> None:
    """A flow still failing keeps the events that say since when and with what, however old; the
    failures between them go, and the streak columns of `flows` stay as they were."""
    day = timedelta(days=1)
    with engine.begin() as connection:
        connection.execute(
            flows.insert().values(
                flow_id=9,
                name="gone quiet",
                node_count=0,
                content_hash="0" * 64,
                first_seen_at=START,
                last_changed_at=START,
                last_fetched_at=START,
                sync_state="error",
                failing_since=START + day,
                consecutive_failures=4,
                last_error_kind="api",
                last_error_code="-22",
            )
        )
        for run_id in range(1, 7):  # runs 1-4 failed flow 9, 5 and 6 no longer fetched it
            moment = START + run_id * day
            connection.execute(
                sync_runs.insert().values(
                    id=run_id,
                    started_at=moment,
                    finished_at=moment,
                    triggered_by="schedule",
                    status="partial",
                )
            )
            if run_id <= 4:
                connection.execute(
                    flow_history.insert().values(
                        run_id=run_id,
                        flow_id=9,
                        occurred_at=moment,
                        event="error",
                        error_kind="api",
                        error_code="-21" if run_id < 4 else "-22",
                    )
                )
    streak = table(engine, flows, "flow_id")
    assert prune(engine, START + 30 * day, dry_run=True) == PruneCounts(flow_history=2, sync_runs=3)
    assert prune(engine, START + 30 * day) == PruneCounts(flow_history=2, sync_runs=3)
    assert [(row["run_id"], row["error_code"]) for row in table(engine, flow_history, "id")] == [
        (1, "-21"),
        (4, "-22"),
    ]
    assert [run["id"] for run in table(engine, sync_runs, "id")] == [1, 4, 6]
    assert table(engine, flows, "flow_id") == streak


def test_prune_waits_for_the_run_lock_and_a_dry_run_does_not(engine: Engine) -> None:
    """A prune never runs beside a sync: it gives up when the lock stays held; a dry run only reads."""
    with run_lock(engine):
        with pytest.raises(LockHeld):
            jobs.prune_history(engine, CUTOFF, lock_wait_s=0.2)
        assert jobs.prune_history(engine, CUTOFF, dry_run=True) == PruneCounts()
    assert jobs.prune_history(engine, CUTOFF, lock_wait_s=0.2) == PruneCounts()


def test_the_command_prints_what_it_deletes_and_status_and_history_still_work(
    engine: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """`flowsync prune` says, per table, what it would delete and then what it deleted; the other
    commands read the pruned database as usual."""
    play(scripted, settings_for(scripted, database_url, "1-4"), engine)
    env = flowsync_env(None, database_url, None)
    dry = flowsync("prune", "--before", "2026-06-07", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "flow_history: would delete 3 error events older than 2026-06-07 00:00:00 UTC",
        "sync_runs: would delete 3 runs older than 2026-06-07 00:00:00 UTC that no kept event refers to",
    ]
    assert events(engine) == EVENTS_PLAYED
    dry_history = flowsync("history", "--limit", "0", env=env).stdout
    done = flowsync("prune", "--before", "2026-06-07T02:00:00+02:00", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "flow_history: deleted 3 error events older than 2026-06-07 00:00:00 UTC",
        "sync_runs: deleted 3 runs older than 2026-06-07 00:00:00 UTC that no kept event refers to",
    ]
    assert events(engine) == EVENTS_KEPT
    status = flowsync("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "Refused" in status.stdout
    assert status.stderr == ""
    history = flowsync("history", "--limit", "0", env=env)
    assert history.returncode == 0, history.stderr
    assert history.stderr == ""
    assert history.stdout.count("Signup OTP v2") >= 1
    assert "error -1" not in history.stdout, "the pruned account error is gone"
    assert "error -1" in dry_history, "it was there before"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-06", datetime(2026, 6, 6, tzinfo=UTC)),
        ("2026-06-06T12:30", datetime(2026, 6, 6, 12, 30, tzinfo=UTC)),
        ("2026-06-06 12:30:15.5", datetime(2026, 6, 6, 12, 30, 15, 500000, tzinfo=UTC)),
        ("2026-06-06T12:30:00Z", datetime(2026, 6, 6, 12, 30, tzinfo=UTC)),
        ("2026-06-06T12:30:00-05:00", datetime(2026, 6, 6, 17, 30, tzinfo=UTC)),
        (" 2026-06-06 ", datetime(2026, 6, 6, tzinfo=UTC)),
    ],
)
def test_a_moment_is_a_day_or_iso_8601_and_utc_without_an_offset(text: str, expected: datetime) -> None:
    moment = parse_instant(text)
    assert moment == expected
    assert moment.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-6-6", "06/06/2026", "2026-13-01", "20260606", "2026-06-06T25:00"]
)
def test_anything_else_is_refused_saying_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected YYYY-MM-DD or an ISO 8601 timestamp"):
        parse_instant(text)


def test_a_bad_date_is_a_usage_error_before_anything_is_opened(tmp_path: Any) -> None:
    """A date that is not YYYY-MM-DD or ISO 8601 exits 2 with what was expected; no database is made."""
    database = tmp_path / "untouched.db"
    result = flowsync(
        "prune", "--before", "2026-13-01", env=flowsync_env(None, f"sqlite:///{database}", None)
    )
    assert result.returncode == 2
    assert "Invalid value for '--before': expected YYYY-MM-DD or an ISO 8601 timestamp" in result.stderr
    assert not database.exists()


@pytest.mark.parametrize(
    "args",
    [[], ["--before", "2026-06-06", "--keep-days", "90"]],
    ids=["none", "both"],
)
def test_prune_needs_exactly_one_cutoff(args: list[str], tmp_path: Any) -> None:
    result = flowsync("prune", *args, env=flowsync_env(None, f"sqlite:///{tmp_path / 'x.db'}", None))
    assert result.returncode == 2
    assert "give exactly one of --before DATE and --keep-days DAYS" in result.stderr


def test_keep_days_prunes_what_is_older_than_that_many_days(engine: Engine, database_url: str) -> None:
    """`--keep-days 90` (for cron) keeps the errors of the last 90 days and prunes the older ones."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for run_id, age_days in ((1, 120), (2, 60), (3, 1)):
            moment = now - timedelta(days=age_days)
            connection.execute(
                sync_runs.insert().values(
                    id=run_id,
                    started_at=moment,
                    finished_at=moment,
                    triggered_by="schedule",
                    status="partial",
                )
            )
            connection.execute(
                flow_history.insert().values(
                    run_id=run_id,
                    flow_id=9,
                    occurred_at=moment,
                    event="error",
                    error_kind="http",
                    error_code="503",
                )
            )
    result = flowsync("prune", "--keep-days", "90", env=flowsync_env(None, database_url, None))
    assert result.returncode == 0, result.stderr
    assert [row["run_id"] for row in table(engine, flow_history, "id")] == [2, 3]
    assert [row["id"] for row in table(engine, sync_runs, "id")] == [2, 3]
