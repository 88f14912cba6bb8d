"""Rows damaged by hand or by another tool: each is reported by its key as corrupt, the rest read as usual.

Each database can hold a different set of corruptions: PostgreSQL's `json` and timestamp
types and MariaDB's JSON check refuse invalid text, SQLite stores anything, MariaDB keeps
zero dates, and every one of them stores valid JSON of the wrong shape. For each corruption
the test either reads past it or shows that the database refuses to hold it.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.cli.wording import describe_event, status_notes
from sync.simulator import SimulatorHandle
from sync.store import reports
from sync.store.schema import flow_history
from tests.conftest import backend_of, settings_for
from tests.process import flowsync, flowsync_env
from tests.test_sync_run import sync

EVERY_DATABASE = {"sqlite", "postgresql", "mariadb"}
ZERO_DATE = "'0000-00-00 00:00:00'"


def corrupt(engine: Engine, table: str, column: str, value_sql: str, where_sql: str) -> None:
    """Overwrite one stored value with raw SQL, as a hand edit or another tool would."""
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE {table} SET {column} = {value_sql} WHERE {where_sql}")


def rename(sim: SimulatorHandle, flow_id: int, name: str) -> None:
    flow = sim.catalog.get(flow_id)
    assert flow is not None
    sim.catalog.put({**flow, "name": name})


def three_flows_and_a_change(engine: Engine, sim: SimulatorHandle, database_url: str) -> int:
    """Flows 1-3 ("Flow 1" ...) created, then flow 2 renamed; the id of flow 2's `changed` event."""
    settings = settings_for(sim, database_url, "1-3")
    for flow_id in (1, 2, 3):
        rename(sim, flow_id, f"Flow {flow_id}")
    sync(settings, engine)
    rename(sim, 2, "Renamed")
    sync(settings, engine)
    with engine.connect() as connection:
        event_id = connection.scalar(sa.select(flow_history.c.id).where(flow_history.c.event == "changed"))
    assert isinstance(event_id, int)
    return event_id


HISTORY_CORRUPTIONS = [
    pytest.param("snapshot", "'not json'", "snapshot is not valid JSON", {"sqlite"}, id="snapshot-not-json"),
    pytest.param(
        "changes", "'[{\"field\": '", "changes is not valid JSON", {"sqlite"}, id="changes-not-json"
    ),
    pytest.param("snapshot", "'[1, 2]'", "snapshot is not a JSON object", EVERY_DATABASE, id="snapshot-list"),
    pytest.param(
        "snapshot",
        '\'{"flow_id": 2, "name": "x", "nodes": 3}\'',
        "snapshot has nodes that are not a list",
        EVERY_DATABASE,
        id="snapshot-nodes-not-a-list",
    ),
    pytest.param(
        "snapshot",
        '\'{"flow_id": 2, "name": 7, "nodes": []}\'',
        "snapshot has a name that is not a string",
        EVERY_DATABASE,
        id="snapshot-name-not-a-string",
    ),
    pytest.param(
        "changes", '\'{"field": "name"}\'', "changes is not a JSON list", EVERY_DATABASE, id="changes-object"
    ),
    pytest.param(
        "changes",
        '\'[{"old": 1, "new": 2}]\'',
        "changes item 1 is not an object with a field name",
        EVERY_DATABASE,
        id="change-without-field",
    ),
    pytest.param(
        "changes",
        '\'[{"field": "name", "old": "a", "new": "b"}, 5]\'',
        "changes item 2 is not an object with a field name",
        EVERY_DATABASE,
        id="change-not-an-object",
    ),
    pytest.param("occurred_at", "'garbage'", "occurred_at is not a timestamp", {"sqlite"}, id="when-garbage"),
    pytest.param(
        "occurred_at", ZERO_DATE, "occurred_at is not a timestamp", {"sqlite", "mariadb"}, id="when-zero-date"
    ),
]


@pytest.mark.parametrize(("column", "value_sql", "problem", "held_by"), HISTORY_CORRUPTIONS)
def test_a_corrupt_event_is_reported_by_key_and_the_others_read(
    engine: Engine,
    sim: SimulatorHandle,
    database_url: str,
    column: str,
    value_sql: str,
    problem: str,
    held_by: set[str],
) -> None:
    """One corrupt `flow_history` value marks only its own event as corrupt; every other event reads."""
    event_id = three_flows_and_a_change(engine, sim, database_url)
    if backend_of(database_url) not in held_by:
        with pytest.raises(sa.exc.DBAPIError):
            corrupt(engine, "flow_history", column, value_sql, f"id = {event_id}")
        return
    corrupt(engine, "flow_history", column, value_sql, f"id = {event_id}")
    described = {entry.id: describe_event(entry) for entry in reports.history(engine)}
    assert described.pop(event_id) == [f"flow 2: event {event_id} is corrupt ({problem})"]
    assert sorted(lines[0].split(":")[0] for lines in described.values()) == [
        'flow 1 "Flow 1"',
        'flow 2 "Flow 2"',
        'flow 3 "Flow 3"',
    ]
    assert all(lines[0].split(": ")[1].startswith("created with") for lines in described.values())


STATUS_CORRUPTIONS = [
    pytest.param("flows", "first_seen_at", "'garbage'", "flow 2", {"sqlite"}, id="first-seen-garbage"),
    pytest.param(
        "flows", "last_changed_at", ZERO_DATE, "flow 2", {"sqlite", "mariadb"}, id="changed-zero-date"
    ),
    pytest.param("flows", "last_fetched_at", "12345", "flow 2", {"sqlite"}, id="fetched-a-number"),
    pytest.param("sync_runs", "started_at", "'soon'", "run 1", {"sqlite"}, id="run-started-garbage"),
    pytest.param(
        "sync_runs", "finished_at", ZERO_DATE, "run 1", {"sqlite", "mariadb"}, id="run-finished-zero"
    ),
]


@pytest.mark.parametrize(("table", "column", "value_sql", "key", "held_by"), STATUS_CORRUPTIONS)
def test_a_corrupt_timestamp_is_reported_by_key_and_the_status_reads(
    engine: Engine,
    sim: SimulatorHandle,
    database_url: str,
    table: str,
    column: str,
    value_sql: str,
    key: str,
    held_by: set[str],
) -> None:
    """A timestamp that is not one marks its flow or run as corrupt; the other flows and runs read."""
    three_flows_and_a_change(engine, sim, database_url)
    where = "flow_id = 2" if table == "flows" else "id = 1"
    if backend_of(database_url) not in held_by:
        with pytest.raises(sa.exc.DBAPIError):
            corrupt(engine, table, column, value_sql, where)
        return
    corrupt(engine, table, column, value_sql, where)
    report = reports.status(engine)
    assert status_notes(report) == [f"{key} is corrupt ({column} is not a timestamp)"]
    assert [flow["flow_id"] for flow in report.flows] == [1, 2, 3]
    assert [run["id"] for run in report.runs] == [2, 1]


def test_status_and_history_read_past_corrupt_rows(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """The real commands exit 0, show the other rows, and name each corrupt row on stderr and in the table."""
    event_id = three_flows_and_a_change(engine, sim, database_url)
    corrupt(engine, "flow_history", "snapshot", "'[1, 2]'", f"id = {event_id}")
    corrupt(engine, "flow_history", "changes", "'[3]'", f"id = {event_id}")
    if backend_of(database_url) != "postgresql":
        corrupt(engine, "flows", "last_changed_at", ZERO_DATE, "flow_id = 3")
    env = flowsync_env(None, database_url)

    history = flowsync("history", env=env)
    assert history.returncode == 0, history.stderr
    problem = "snapshot is not a JSON object; changes item 1 is not an object with a field name"
    line = f"flow 2: event {event_id} is corrupt ({problem})"
    assert line.replace(" ", "") in history.stdout.replace(" ", "").replace("\n", "").replace("│", "")
    assert f"flowsync: {line}" in history.stderr
    for flow_id in (1, 2, 3):
        assert f'flow {flow_id} "Flow {flow_id}": created with' in history.stdout

    status = flowsync("status", env=env)
    assert status.returncode == 0, status.stderr
    for name in ("Flow 1", "Renamed", "Flow 3"):
        assert name in status.stdout
    if backend_of(database_url) != "postgresql":
        assert "flowsync: flow 3 is corrupt (last_changed_at is not a timestamp)" in status.stderr
        assert "corrupt" in status.stdout


def test_json_and_csv_name_corrupt_values_and_read_past_them(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """Machine output exits 0, gives a corrupt value as null with a `corrupt` entry naming its column."""
    event_id = three_flows_and_a_change(engine, sim, database_url)
    corrupt(engine, "flow_history", "snapshot", "'[1, 2]'", f"id = {event_id}")
    zero_date = backend_of(database_url) != "postgresql"
    if zero_date:
        corrupt(engine, "flows", "last_changed_at", ZERO_DATE, "flow_id = 3")
    env = flowsync_env(None, database_url, flow_ids=None)

    history = flowsync("history", "--format", "json", env=env)
    assert history.returncode == 0, history.stderr
    records = {record["id"]: record for record in json.loads(history.stdout)}
    assert records[event_id]["snapshot"] is None
    assert records[event_id]["corrupt"] == {"snapshot": "is not a JSON object"}
    assert sum(1 for record in records.values() if not record["corrupt"]) == len(records) - 1
    assert f"flowsync: flow 2: event {event_id} is corrupt (snapshot is not a JSON object)" in history.stderr
    rows = list(csv.DictReader(io.StringIO(flowsync("history", "--format", "csv", env=env).stdout)))
    assert [row["corrupt"] for row in rows if row["id"] == str(event_id)] == ["snapshot is not a JSON object"]

    status = flowsync("status", "--format", "csv", env=env)
    assert status.returncode == 0, status.stderr
    flows = {row["flow_id"]: row for row in csv.DictReader(io.StringIO(status.stdout))}
    assert set(flows) == {"1", "2", "3"}
    if zero_date:
        assert flows["3"]["corrupt"] == "last_changed_at is not a timestamp"
        assert flows["3"]["last_changed_at"] == ""
        assert "flowsync: flow 3 is corrupt (last_changed_at is not a timestamp)" in status.stderr
