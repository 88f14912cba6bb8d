"""The analyst layer (schema 0002): versions, their nodes, changed values, streaks and the current view.

A scripted history runs against the simulator on every backend; the tables are checked
row by row, and against an independent replay of `flow_history` (`tests/replay.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.app.settings import Settings
from sync.pipeline.loop import RunReport
from sync.simulator import Fault, FaultKind, SimulatorConfig, SimulatorHandle, running_simulator
from sync.store import migrate
from sync.store.database import create_engine
from sync.store.schema import (
    current_flow_nodes,
    flow_changes,
    flow_history,
    flow_version_nodes,
    flow_versions,
    flows,
)
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger
from tests.conftest import backend_of, settings_for
from tests.replay import assert_analyst_layer_replays, stored

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)


def node(waiting_time: int, status: int = 1, channel: str = "sms", channel_cut: int = 0) -> dict[str, Any]:
    return {"waitingTime": waiting_time, "status": status, "channel": channel, "channelCut": channel_cut}


FLOW_1 = {"flowId": 1, "name": "Login OTP", "flow": [node(30), node(60, 2, "call")]}
FLOW_2 = {"flowId": 2, "name": "Signup OTP", "flow": [node(45)]}
FLOW_3 = {"flowId": 3, "name": "Payment", "flow": [node(90, 2, "call", 1)]}


@pytest.fixture
def scripted() -> Iterator[SimulatorHandle]:
    with running_simulator(SimulatorConfig(flow_count=0)) as handle:
        for flow in (FLOW_1, FLOW_2, FLOW_3):
            handle.catalog.put(flow)
        yield handle


def sync(settings: Settings, engine: Engine) -> RunReport:
    return jobs.sync_once(
        settings, settings.require_api(), engine, triggered_by=Trigger.SCHEDULE, backoff=FAST
    )


def play_history(sim: SimulatorHandle, settings: Settings, engine: Engine) -> list[RunReport]:
    """Six runs: create; change a name and a value, add a node; remove it, delete a flow; restore it
    changed while another flow starts failing; fail again; recover."""
    reports = [sync(settings, engine)]
    sim.catalog.put({**FLOW_1, "name": "Login OTP v2", "flow": [node(30), node(75, 2, "call")]})
    sim.catalog.put({**FLOW_2, "flow": [node(45), node(120, 2, "call", 1)]})
    reports.append(sync(settings, engine))
    sim.catalog.put(FLOW_2)
    sim.faults.persist(3, Fault(FaultKind.NULL_DATA))
    reports.append(sync(settings, engine))
    sim.faults.persist(3, None)
    sim.catalog.put({**FLOW_3, "flow": [node(90, 1, "call", 1)]})
    sim.faults.persist(1, Fault.html())
    reports.append(sync(settings, engine))
    sim.faults.persist(1, Fault.http(404))
    reports.append(sync(settings, engine))
    sim.faults.persist(1, None)
    reports.append(sync(settings, engine))
    return reports


def rows(engine: Engine, query: sa.Select[Any]) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def history_ids(engine: Engine, flow_id: int) -> list[tuple[int, str, datetime]]:
    query = (
        sa.select(flow_history.c.id, flow_history.c.event, flow_history.c.occurred_at)
        .where(flow_history.c.flow_id == flow_id)
        .order_by(flow_history.c.id)
    )
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def test_every_configuration_event_opens_or_closes_a_version(
    engine: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """Created, changed and restored open a version; changed and deleted close the one before."""
    play_history(scripted, settings_for(scripted, database_url, "1-3"), engine)
    (created, _), (changed, changed_at) = [(i, t) for i, e, t in history_ids(engine, 1) if e != "error"]
    created_at = history_ids(engine, 1)[0][2]
    versions = rows(
        engine, sa.select(flow_versions).where(flow_versions.c.flow_id == 1).order_by("version_no")
    )
    assert [(v["version_no"], v["name"], v["node_count"]) for v in versions] == [
        (1, "Login OTP", 2),
        (2, "Login OTP v2", 2),
    ]
    first, second = versions
    assert (first["valid_from"], first["valid_to"]) == (created_at, changed_at)
    assert (first["opened_by"], first["opened_by_event"]) == (created, "created")
    assert (first["closed_by"], first["closed_by_event"]) == (changed, "changed")
    assert first["seconds_current"] == int((changed_at - created_at).total_seconds())
    assert (second["valid_to"], second["closed_by"], second["seconds_current"]) == (None, None, None)
    events = [e for _, e, _ in history_ids(engine, 3)]
    assert events == ["created", "deleted", "restored"]
    restored = rows(
        engine, sa.select(flow_versions).where(flow_versions.c.flow_id == 3).order_by("version_no")
    )
    assert [(v["opened_by_event"], v["closed_by_event"]) for v in restored] == [
        ("created", "deleted"),
        ("restored", None),
    ]
    with engine.connect() as connection:
        current = connection.execute(
            sa.select(flow_versions.c.flow_id, sa.func.count())
            .where(flow_versions.c.valid_to.is_(None))
            .group_by(flow_versions.c.flow_id)
        ).all()
    assert sorted(current) == [(1, 1), (2, 1), (3, 1)], "exactly one current version per live flow"
    assert_analyst_layer_replays(engine)


def test_each_changed_value_is_one_row_and_a_whole_node_one_row_per_attribute(
    engine: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """`flow_changes` spells every changed scalar as text; an added node is four `added` rows."""
    play_history(scripted, settings_for(scripted, database_url, "1-3"), engine)
    query = sa.select(
        flow_changes.c.flow_id,
        flow_changes.c.event,
        flow_changes.c.change_no,
        flow_changes.c.field,
        flow_changes.c.position,
        flow_changes.c.attribute,
        flow_changes.c.change_kind,
        flow_changes.c.old_value,
        flow_changes.c.new_value,
    ).order_by(flow_changes.c.history_id, flow_changes.c.change_no)
    assert [tuple(r.values()) for r in rows(engine, query)] == [
        (1, "changed", 1, "name", None, "name", "modified", "Login OTP", "Login OTP v2"),
        (1, "changed", 2, "nodes[2].waiting_time", 2, "waiting_time", "modified", "60", "75"),
        (2, "changed", 1, "nodes[2].waiting_time", 2, "waiting_time", "added", None, "120"),
        (2, "changed", 2, "nodes[2].status", 2, "status", "added", None, "2"),
        (2, "changed", 3, "nodes[2].channel", 2, "channel", "added", None, "call"),
        (2, "changed", 4, "nodes[2].channel_cut", 2, "channel_cut", "added", None, "1"),
        (2, "changed", 1, "nodes[2].waiting_time", 2, "waiting_time", "removed", "120", None),
        (2, "changed", 2, "nodes[2].status", 2, "status", "removed", "2", None),
        (2, "changed", 3, "nodes[2].channel", 2, "channel", "removed", "call", None),
        (2, "changed", 4, "nodes[2].channel_cut", 2, "channel_cut", "removed", "1", None),
        (3, "restored", 1, "nodes[1].status", 1, "status", "modified", "2", "1"),
    ]
    for change in rows(engine, sa.select(flow_changes)):
        assert change["occurred_on"] == change["occurred_at"].astimezone(UTC).date()
    assert_analyst_layer_replays(engine)


def test_streak_columns_count_failed_fetches_of_the_flow_until_one_succeeds(
    engine: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """Two failed fetches in a row set the streak; the next success clears it; nothing else counts."""
    settings = settings_for(scripted, database_url, "1-3")
    reports = play_history(scripted, settings, engine)
    streak = (
        flows.c.failing_since,
        flows.c.consecutive_failures,
        flows.c.last_error_kind,
        flows.c.last_error_code,
    )
    assert rows(engine, sa.select(*streak).where(flows.c.flow_id == 1)) == [
        {"failing_since": None, "consecutive_failures": 0, "last_error_kind": None, "last_error_code": None}
    ]
    assert [r.status for r in reports] == ["ok", "ok", "ok", "partial", "partial", "ok"]
    scripted.faults.persist(1, Fault.html())
    sync(settings, engine)
    scripted.faults.persist(1, Fault.http(404))
    sync(settings, engine)
    scripted.faults.set_account(Fault.api("-1"))  # account-level: not a failure of flow 1
    sync(settings, engine)
    errors = [t for _, e, t in history_ids(engine, 1) if e == "error"]
    (row,) = rows(engine, sa.select(*streak).where(flows.c.flow_id == 1))
    assert row == {
        "failing_since": errors[-2],
        "consecutive_failures": 2,
        "last_error_kind": "http",
        "last_error_code": "404",
    }
    assert_analyst_layer_replays(engine)


def test_current_flow_nodes_shows_live_flows_with_labels(
    engine: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """The view leaves deleted flows out and labels the codes; an undocumented code has no label."""
    settings = settings_for(scripted, database_url, "1-3")
    scripted.catalog.put({**FLOW_2, "flow": [node(45, 7, "fax", 9)]})
    sync(settings, engine)
    scripted.faults.persist(3, Fault(FaultKind.NULL_DATA))
    sync(settings, engine)
    view = rows(engine, sa.select(current_flow_nodes).order_by("flow_id", "position"))
    assert [
        (v["flow_id"], v["flow_name"], v["position"], v["status_label"], v["channel"], v["channel_cut_label"])
        for v in view
    ] == [
        (1, "Login OTP", 1, "sending failed", "sms", "switch channel"),
        (1, "Login OTP", 2, "not verified", "call", "switch channel"),
        (2, "Signup OTP", 1, None, "fax", None),
    ]


def test_an_unchanged_run_writes_nothing_to_the_analyst_tables(
    engine: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """Nothing changed: no version, version node or changed value is written or updated."""
    settings = settings_for(scripted, database_url, "1-3")
    sync(settings, engine)
    every_row = [
        sa.select(table).order_by(*table.primary_key.columns)
        for table in (flow_versions, flow_version_nodes, flow_changes, flow_history)
    ]
    before = [rows(engine, query) for query in every_row]
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert sync(settings, engine).counts.unchanged == 3
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    # The table each write statement writes to (a subquery may read others: the run's chain head).
    written = {
        match.group(1)
        for s in seen
        if (match := re.match(r"\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+[`\"]?(\w+)", s, re.IGNORECASE))
    }
    assert "sync_runs" in written, "the check sees the writes it should"
    touched = written & {"flow_versions", "flow_version_nodes", "flow_changes", "flow_history"}
    assert touched == set()
    # Statement events do not see PostgreSQL's COPY, so the rows themselves are compared too.
    assert [rows(engine, query) for query in every_row] == before


@pytest.mark.parametrize("database_url", ["postgresql", "mariadb"], indirect=True)
def test_timestamps_are_utc_whatever_the_session_time_zone(
    scripted: SimulatorHandle, database_url: str
) -> None:
    """A session in another time zone writes the same UTC instants and days as a UTC session."""
    engine = create_engine(database_url)
    zone = (
        "SET TIME ZONE 'Asia/Kathmandu'"
        if backend_of(database_url) == "postgresql"
        else "SET time_zone = '+05:45'"
    )

    @sa.event.listens_for(engine, "connect")
    def _local_session(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(zone)
        cursor.close()
        dbapi_connection.commit()  # psycopg opened a transaction for the SET

    try:
        migrate.upgrade(engine)
        before = datetime.now(UTC)
        play_history(scripted, settings_for(scripted, database_url, "1-3"), engine)
        after = datetime.now(UTC)
    finally:
        engine.dispose()
    utc_engine = create_engine(database_url)
    try:
        stamps = rows(utc_engine, sa.select(flow_history.c.occurred_at))
        assert all(before <= r["occurred_at"] <= after for r in stamps)
        for change in rows(utc_engine, sa.select(flow_changes)):
            assert change["occurred_on"] == change["occurred_at"].date()
        assert_analyst_layer_replays(utc_engine)
    finally:
        utc_engine.dispose()


def test_migration_0002_fills_the_layer_from_an_older_history_as_the_writer_would(
    engine: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """A history written under schema 0001, upgraded, holds exactly what the live writer wrote for it."""
    settings = settings_for(scripted, database_url, "1-3")
    play_history(scripted, settings, engine)
    scripted.faults.persist(2, Fault.html())
    sync(settings, engine)  # leave flow 2 failing, so that a streak is carried over too
    with engine.connect() as connection:
        written = stored(connection)
    assert written.streaks[2][1] == 1
    migrate.downgrade(engine, "0001")
    assert "flow_versions" not in sa.inspect(engine).get_table_names()
    migrate.upgrade(engine)
    with engine.connect() as connection:
        assert stored(connection) == written
    assert_analyst_layer_replays(engine)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_migration_0002_skips_unreadable_history_rows_and_says_which(
    engine: Engine, scripted: SimulatorHandle, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt event (SQLite keeps any text) does not block the upgrade; the warning names its row."""
    play_history(scripted, settings_for(scripted, database_url, "1-3"), engine)
    migrate.downgrade(engine, "0001")
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE flow_history SET snapshot = '{not json' WHERE id = 1")
        connection.exec_driver_sql("UPDATE flow_history SET occurred_at = 'yesterday' WHERE id = 2")
    with caplog.at_level("WARNING"):
        migrate.upgrade(engine)
    assert "flow_history row 1 is not readable and was skipped" in caplog.text
    assert "flow_history row 2: its occurred_at is not a timestamp, so the row was skipped" in caplog.text
    with engine.connect() as connection:
        versions = connection.scalar(sa.select(sa.func.count()).select_from(flow_versions))
    assert versions is not None
    assert versions > 0
