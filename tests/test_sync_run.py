"""One sync run against the simulator, on every database backend: what is written, and what is not."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.app.settings import Settings
from sync.core.outcomes import RunCounts
from sync.errors import LockHeld, SchemaError
from sync.pipeline.loop import RunReport
from sync.pipeline.stop import StopRequest
from sync.simulator import Fault, FaultKind, SimulatorHandle
from sync.store.database import create_engine
from sync.store.run_lock import run_lock
from sync.store.schema import flow_history, flow_nodes, flows, sync_runs
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger
from tests.conftest import settings_for
from tests.tables import served_snapshot, stored_snapshot

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)


def sync(settings: Settings, engine: Engine, **kwargs: Any) -> RunReport:
    return jobs.sync_once(
        settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST, **kwargs
    )


def rows(engine: Engine, table: sa.Table, *order: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        query = sa.select(table).order_by(*(table.c[name] for name in order or [table.c.keys()[0]]))
        return [dict(row._mapping) for row in connection.execute(query)]


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def counts_add_up(report: RunReport) -> bool:
    c = report.counts
    return c.created + c.changed + c.unchanged + c.deleted + c.failed == c.requested


def test_a_run_uses_the_api_settings_the_command_checked(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """`sync_once` takes the key, secret and flow IDs checked once per command; it does not look again."""
    checked = settings_for(sim, database_url, "1-3").require_api()
    unchecked = settings_for(sim, database_url).model_copy(
        update={"api_key": None, "api_secret": None, "flow_ids": None}
    )
    report = jobs.sync_once(unchecked, checked, engine, triggered_by=Trigger.MANUAL, backoff=FAST)
    assert (report.status, report.counts.created) == ("ok", 3)


def test_first_sync_stores_every_flow_as_served(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A first run creates one `flows` row, its nodes and one `created` event per flow."""
    report = sync(settings_for(sim, database_url), engine)
    assert (report.status, report.exit_code) == ("ok", 0)
    assert report.counts.created == 20
    assert counts_add_up(report)
    for flow_id in (1, 7, 20):
        assert stored_snapshot(engine, flow_id) == served_snapshot(sim, flow_id)
    history = rows(engine, flow_history, "id")
    assert [h["event"] for h in history] == ["created"] * 20
    assert all(h["snapshot"] == stored_snapshot(engine, h["flow_id"]) for h in history)
    flow = rows(engine, flows, "flow_id")[0]
    assert flow["sync_state"] == "ok"
    assert flow["node_count"] == len(stored_snapshot(engine, 1)["nodes"])
    assert flow["first_seen_at"].tzinfo is UTC
    assert flow["first_seen_at"] == flow["last_changed_at"] == flow["last_fetched_at"]
    (run,) = rows(engine, sync_runs, "id")
    assert (run["status"], run["triggered_by"], run["flows_requested"], run["flows_created"]) == (
        "ok",
        "manual",
        20,
        20,
    )
    assert run["finished_at"] >= run["started_at"]


def test_unchanged_flows_touch_neither_nodes_nor_history(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A second run with nothing changed only refreshes `last_fetched_at`, in batched statements."""
    settings = settings_for(sim, database_url)
    sync(settings, engine)
    before = rows(engine, flows, "flow_id")
    nodes_before = rows(engine, flow_nodes, "flow_id", "position")
    with statements(engine) as sent:
        report = sync(settings, engine)
    assert report.counts.unchanged == 20
    assert counts_add_up(report)
    assert not [s for s in sent if "flow_nodes" in s or "INSERT INTO flow_history" in s]
    # PostgreSQL's COPY is not a statement the engine's events see: compare the rows too.
    assert rows(engine, flow_nodes, "flow_id", "position") == nodes_before
    flow_updates = {s.split("=")[0] for s in sent if s.startswith("UPDATE flows")}
    assert flow_updates == {"UPDATE flows SET last_fetched_at"}
    after = rows(engine, flows, "flow_id")
    assert [a["last_fetched_at"] > b["last_fetched_at"] for a, b in zip(after, before, strict=True)] == [
        True
    ] * 20
    assert [a["last_changed_at"] for a in after] == [b["last_changed_at"] for b in before]
    assert len(rows(engine, flow_history)) == 20


def test_changes_are_recorded_field_by_field(engine: Engine, sim: SimulatorHandle, database_url: str) -> None:
    """Changed flows get one `changed` event whose changes turn the old snapshot into the new one."""
    settings = settings_for(sim, database_url)
    sync(settings, engine)
    old = {flow_id: stored_snapshot(engine, flow_id) for flow_id in range(1, 21)}
    changed = sim.catalog.mutate(0.25, random.Random(5))
    report = sync(settings, engine)
    assert report.counts.changed == len(changed) == 5
    assert report.counts.unchanged == 15
    events = [h for h in rows(engine, flow_history, "id") if h["event"] == "changed"]
    assert sorted(h["flow_id"] for h in events) == sorted(changed)
    for event in events:
        flow_id = event["flow_id"]
        assert event["snapshot"] == stored_snapshot(engine, flow_id) == served_snapshot(sim, flow_id)
        assert event["changes"], "a changed event lists its changes"
        assert event["snapshot"] != old[flow_id]
    stored = {f["flow_id"]: f for f in rows(engine, flows, "flow_id")}
    assert all(stored[i]["last_changed_at"] > stored[i]["first_seen_at"] for i in changed)


def test_a_failed_fetch_keeps_the_stored_configuration(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A flow whose fetch fails keeps its last good configuration, is marked `error`, then recovers."""
    settings = settings_for(sim, database_url)
    sync(settings, engine)
    good = stored_snapshot(engine, 3)
    sim.catalog.mutate(1.0, random.Random(9))
    sim.faults.persist(3, Fault.html())
    report = sync(settings, engine)
    assert (report.status, report.exit_code, report.counts.failed) == ("partial", 1, 1)
    assert counts_add_up(report)
    assert stored_snapshot(engine, 3) == good
    flow = next(f for f in rows(engine, flows, "flow_id") if f["flow_id"] == 3)
    assert flow["sync_state"] == "error"
    assert "HTML" in flow["last_error"]
    error = [h for h in rows(engine, flow_history, "id") if h["event"] == "error"]
    assert [(e["flow_id"], e["error_kind"], e["snapshot"]) for e in error] == [(3, "payload", None)]

    sim.faults.persist(3, None)
    report = sync(settings, engine)
    assert report.status == "ok"
    flow = next(f for f in rows(engine, flows, "flow_id") if f["flow_id"] == 3)
    assert (flow["sync_state"], flow["last_error"]) == ("ok", None)
    assert stored_snapshot(engine, 3) == served_snapshot(sim, 3)


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        (Fault.api("-22"), "api", "-22"),
        (Fault.api("-18"), "api", "-18"),
        (Fault.http(503), "http", "503"),
        (Fault.http(404), "http", "404"),
        (Fault(FaultKind.RESET), "network", None),
        (Fault(FaultKind.TRUNCATED), "payload", None),
        (Fault(FaultKind.WRONG_ID), "payload", None),
    ],
)
def test_each_error_class_is_recorded_with_its_kind_and_code(
    engine: Engine, sim: SimulatorHandle, database_url: str, fault: Fault, kind: str, code: str | None
) -> None:
    """Every way a fetch fails ends as one `error` event with the contract's kind and code."""
    sim.faults.persist(4, fault)
    report = sync(settings_for(sim, database_url, "1-5"), engine)
    assert (report.status, report.counts.failed, report.counts.created) == ("partial", 1, 4)
    (error,) = [h for h in rows(engine, flow_history, "id") if h["event"] == "error"]
    assert (error["flow_id"], error["error_kind"], error["error_code"]) == (4, kind, code)
    assert error["error_message"]
    assert 4 not in {f["flow_id"] for f in rows(engine, flows, "flow_id")}


def test_transient_failures_are_retried_and_then_stored(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """Two 503s and a -18 within the retry budget leave no trace but the stored flow."""
    sim.faults.queue(2, Fault.http(503), Fault.http(503))
    sim.faults.queue(3, Fault.api("-18"), Fault.http(429, retry_after=0))
    report = sync(settings_for(sim, database_url, "1-5"), engine)
    assert (report.status, report.counts.created) == ("ok", 5)
    assert {h["event"] for h in rows(engine, flow_history, "id")} == {"created"}


def test_account_errors_stop_the_run_at_once(engine: Engine, sim: SimulatorHandle, database_url: str) -> None:
    """-1 ends the run after the requests already in flight, with one account-level error event."""
    settings = settings_for(sim, database_url, "1-20")
    sim.faults.set_account(Fault.api("-1"))
    report = sync(settings, engine)
    assert (report.status, report.exit_code) == ("failed", 1)
    assert "account" in (report.error_message or "")
    assert sim.stats.requests.get("details", 0) <= settings.concurrency
    history = rows(engine, flow_history, "id")
    assert [(h["event"], h["flow_id"], h["error_code"]) for h in history] == [("error", None, "-1")]
    assert rows(engine, flows) == []
    (run,) = rows(engine, sync_runs)
    assert run["status"] == "failed"
    assert run["error_message"]


def test_data_null_means_deleted_and_a_return_means_restored(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """`data: null` marks a known flow deleted (config kept); serving it again records `restored`."""
    settings = settings_for(sim, database_url, "1-5")
    sync(settings, engine)
    kept = stored_snapshot(engine, 2)
    sim.faults.persist(2, Fault(FaultKind.NULL_DATA))
    report = sync(settings, engine)
    assert (report.status, report.counts.deleted, report.counts.unchanged) == ("ok", 1, 4)
    flow = next(f for f in rows(engine, flows) if f["flow_id"] == 2)
    assert flow["sync_state"] == "deleted"
    assert flow["deleted_at"] is not None
    assert stored_snapshot(engine, 2) == kept

    assert sync(settings, engine).counts.unchanged == 5, "still gone: nothing new to record"
    sim.faults.persist(2, None)
    report = sync(settings, engine)
    assert report.counts.changed == 1
    assert counts_add_up(report)
    flow = next(f for f in rows(engine, flows) if f["flow_id"] == 2)
    assert (flow["sync_state"], flow["deleted_at"]) == ("ok", None)
    events = [h["event"] for h in rows(engine, flow_history, "id") if h["flow_id"] == 2]
    assert events == ["created", "deleted", "restored"]


def test_all_mode_uses_one_listing_and_follows_deletions(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """`all` syncs every listed flow with one request; unlisted flows become deleted, then restored."""
    settings = settings_for(sim, database_url, "all")
    report = sync(settings, engine)
    assert (report.status, report.counts.created, report.counts.requested) == ("ok", 20, 20)
    assert sim.stats.requests == {"list": 1}

    sim.catalog.delete([5, 6])
    report = sync(settings, engine)
    assert (report.counts.deleted, report.counts.unchanged) == (2, 18)
    assert counts_add_up(report)
    assert {f["flow_id"] for f in rows(engine, flows) if f["sync_state"] == "deleted"} == {5, 6}

    sim.catalog.restore([5])
    report = sync(settings, engine)
    assert report.counts.changed == 1
    states = {f["flow_id"]: f["sync_state"] for f in rows(engine, flows)}
    assert (states[5], states[6]) == ("ok", "deleted")


def test_a_failed_listing_deletes_nothing(engine: Engine, sim: SimulatorHandle, database_url: str) -> None:
    """When `/flow/list` fails, the run fails and every stored flow stays as it was."""
    settings = settings_for(sim, database_url, "all")
    sync(settings, engine)
    sim.faults.persist("list", Fault(FaultKind.TRUNCATED))
    report = sync(settings, engine)
    assert (report.status, report.exit_code) == ("failed", 1)
    assert {f["sync_state"] for f in rows(engine, flows)} == {"ok"}
    errors = [h for h in rows(engine, flow_history, "id") if h["event"] == "error"]
    assert [(e["flow_id"], e["error_kind"]) for e in errors] == [(None, "payload")]


def test_a_run_left_running_is_closed_by_the_next(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A `running` row left by a killed process is marked `failed` when the next run starts."""
    with engine.begin() as connection:
        connection.execute(
            sync_runs.insert().values(
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
                triggered_by=Trigger.SCHEDULE,
                status="running",
                **RunCounts(requested=5).as_columns(),
            )
        )
    sync(settings_for(sim, database_url, "1-2"), engine)
    crashed, current = rows(engine, sync_runs, "id")
    assert (crashed["status"], current["status"]) == ("failed", "ok")
    assert crashed["finished_at"] is not None
    assert "never finished" in crashed["error_message"]


def test_a_stop_request_finishes_the_flows_in_hand(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A stop (SIGTERM in the CLI) ends the run early as failed, each written flow whole."""
    stop = StopRequest()

    class StopAfterFirstBatch:
        def start(self, total: int | None) -> None:
            pass

        def advance(self, count: int) -> None:
            stop.set()

        def finish(self) -> None:
            pass

    sim.faults.set_random(1.0, [Fault.delay(0.05)])
    settings = settings_for(sim, database_url, "1-20", concurrency=1)
    report = sync(settings, engine, stop=stop, progress=StopAfterFirstBatch())
    assert report.status == "failed"
    assert "stopped" in (report.error_message or "")
    assert 1 <= report.counts.created < 20
    for flow in rows(engine, flows):
        assert stored_snapshot(engine, flow["flow_id"]) == served_snapshot(sim, flow["flow_id"])


def test_a_database_behind_the_migrations_is_refused(sim: SimulatorHandle, database_url: str) -> None:
    """`sync` on a database without the schema stops with `SchemaError` and writes nothing."""
    engine = create_engine(database_url)
    try:
        with pytest.raises(SchemaError, match="flowsync db upgrade"):
            sync(settings_for(sim, database_url), engine)
        if database_url.startswith("sqlite"):
            assert not Path(database_url.removeprefix("sqlite:///")).exists()
        else:
            assert sa.inspect(engine).get_table_names() == []
        assert sim.stats.requests == {}
    finally:
        engine.dispose()


def test_a_second_run_while_one_holds_the_lock_does_nothing(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """While another run holds the lock, a run raises `LockHeld` before any request."""
    with run_lock(engine), pytest.raises(LockHeld):
        sync(settings_for(sim, database_url), engine)
    assert sim.stats.requests == {}
    assert rows(engine, sync_runs) == []


def test_hostile_names_are_stored_unchanged(engine: Engine, sim: SimulatorHandle, database_url: str) -> None:
    """SQL metacharacters, quotes, emoji and long names round-trip exactly."""
    names = ["'; DROP TABLE flows; --", 'quote " and \\ backslash', "Ünïcødé ✓ 🚀 验证码", "x" * 255]
    for flow_id, name in enumerate(names, start=1):
        sim.catalog.put(
            {"flowId": flow_id, "name": name, "flow": [{"waitingTime": 30, "status": 1, "channel": "sms"}]}
        )
    report = sync(settings_for(sim, database_url, f"1-{len(names)}"), engine)
    assert report.status == "ok"
    assert [f["name"] for f in rows(engine, flows, "flow_id")] == names
    assert [h["snapshot"]["name"] for h in rows(engine, flow_history, "id")] == names


@pytest.mark.parametrize("offset_s", [600, -600, 3 * 3600])
def test_a_server_clock_far_off_is_followed(
    engine: Engine, sim: SimulatorHandle, database_url: str, offset_s: int
) -> None:
    """With the server's clock minutes or hours off, -16 leads to one re-signed request per flow at most."""
    sim.faults.set_clock_offset(offset_s)
    report = sync(settings_for(sim, database_url, "1-5"), engine)
    assert (report.status, report.counts.created) == ("ok", 5)
    assert sim.stats.requests["details"] <= 10
    assert sim.stats.responses.get("-16", 0) <= 5


def test_an_account_error_cancels_fetches_still_retrying(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """Once -1 arrives, flows waiting to retry are dropped: no further request, no error rows for them."""
    for flow_id in range(2, 9):
        sim.faults.persist(flow_id, Fault.http(503))
    sim.faults.persist(1, Fault.api("-1"))
    settings = settings_for(sim, database_url, "1-20", concurrency=8, retries=3)
    # Retries wait far longer than -1 can take to arrive on a loaded machine; a cancelled wait
    # costs nothing, a wait that is not cancelled shows as extra requests (or a slow test).
    slow_retries = Backoff(initial_s=30, max_s=60, retry_after_cap_s=60)
    report = jobs.sync_once(
        settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=slow_retries
    )
    assert report.status == "failed"
    assert sim.stats.requests["details"] <= 8
    events = [(h["event"], h["flow_id"], h["error_code"]) for h in rows(engine, flow_history, "id")]
    assert events == [("error", None, "-1")]


def test_a_stop_during_retries_records_no_failures(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A stop while flows wait out Retry-After cancels them: no burst of retries, no error rows."""
    stop = StopRequest()
    for flow_id in range(1, 21):
        sim.faults.persist(flow_id, Fault.http(429, retry_after=60))

    class StopWhenStarted:
        def start(self, total: int | None) -> None:
            stop.set()

        def advance(self, count: int) -> None:
            pass

        def finish(self) -> None:
            pass

    settings = settings_for(sim, database_url, "1-20", concurrency=4)
    patient = Backoff(initial_s=1, max_s=60, retry_after_cap_s=60)
    report = jobs.sync_once(
        settings,
        settings.require_api(),
        engine,
        triggered_by=Trigger.MANUAL,
        backoff=patient,
        stop=stop,
        progress=StopWhenStarted(),
    )
    assert report.status == "failed"
    assert "stopped by a signal" in (report.error_message or "")
    assert sim.stats.requests.get("details", 0) <= 4
    assert rows(engine, flow_history) == []


def test_an_unreachable_api_ends_the_run_early(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """When nothing answers, the run stops after a streak of network failures instead of trying every flow."""
    closed_port = settings_for(sim, database_url, "1-500", base_url="http://127.0.0.1:9/otp", retries=0)
    report = sync(closed_port, engine)
    assert report.status == "failed"
    assert "unreachable" in (report.error_message or "")
    assert 20 <= report.counts.failed < 100
    (run,) = rows(engine, sync_runs)
    assert run["flows_failed"] == report.counts.failed
