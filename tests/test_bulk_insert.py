"""`insert_rows`: rows go in by `COPY` on PostgreSQL and by `executemany` elsewhere, with one behaviour.

The values must come back exactly (COPY's text format has its own escapes and its own NULL
marker, and bypasses SQLAlchemy's types unless `insert_rows` applies them), a refused row
must roll back the whole batch and surface as SQLAlchemy's `DBAPIError` (the writer
isolates the refusing flow on it), and a session that dies during the COPY must be told
apart as a lost connection, not as one flow's refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from sync.core.outcomes import Fetched
from sync.core.snapshot import FlowSnapshot, NodeSnapshot
from sync.errors import StoreError
from sync.store import migrate, writer
from sync.store.bulk import insert_rows
from sync.store.database import create_engine
from sync.store.schema import flow_changes, flow_history, flow_nodes, flows, sync_runs
from sync.vocabulary import Event, Trigger
from tests.conftest import fresh_database

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
# Text that COPY's text format must escape: its column and row separators, its escape
# character, its NULL marker written out, quotes, an empty string and characters beyond ASCII.
AWKWARD_CHANNELS = ["a\tb", "line\nbreak", "carriage\rreturn", "back\\slash", "\\N", "'\"", "", "ünï©ødé ✓"]


def _flow_row(flow_id: int) -> dict[str, object]:
    return {
        "flow_id": flow_id,
        "name": f"flow {flow_id}",
        "node_count": len(AWKWARD_CHANNELS),
        "content_hash": "0" * 64,
        "first_seen_at": NOW,
        "last_changed_at": NOW,
        "sync_state": "ok",
    }


def _node_rows(flow_id: int) -> list[dict[str, object]]:
    return [
        {
            "flow_id": flow_id,
            "position": position,
            "waiting_time": 2**40 + position,  # beyond 32 bits: the BIGINT columns
            "status": position,
            "channel": channel,
            "channel_cut": -position,
        }
        for position, channel in enumerate(AWKWARD_CHANNELS)
    ]


def _stored_nodes(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(flow_nodes).order_by(flow_nodes.c.flow_id, flow_nodes.c.position))
        return [dict(row._mapping) for row in rows]


def test_rows_come_back_exactly_as_given(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(flows.insert(), [_flow_row(1), _flow_row(2)])
        insert_rows(connection, flow_nodes, _node_rows(1) + _node_rows(2))
    assert _stored_nodes(engine) == _node_rows(1) + _node_rows(2)


def test_timestamps_and_json_go_through_their_column_types(engine: Engine) -> None:
    """UTC is stored whatever the zone given; JSON round-trips; Python None is SQL NULL, not JSON null."""
    tokyo = timezone(timedelta(hours=9))
    changes = [{"field": "name", "old": "a\tb", "new": "ünï ✓ \\N"}]
    snapshot = {"flow_id": 1, "name": "x", "nodes": []}
    rows: list[dict[str, object]] = [
        {"id": 10, "run_id": None, "flow_id": 1, "occurred_at": NOW.astimezone(tokyo), "event": "created",
         "changes": None, "snapshot": snapshot, "content_hash": "0" * 64},
        {"id": 11, "run_id": None, "flow_id": 1, "occurred_at": NOW, "event": "changed",
         "changes": changes, "snapshot": snapshot, "content_hash": "1" * 64},
    ]  # fmt: skip
    with engine.begin() as connection:
        insert_rows(connection, flow_history, rows)
    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(
                flow_history.c.id, flow_history.c.occurred_at, flow_history.c.changes, flow_history.c.snapshot
            ).order_by(flow_history.c.id)
        ).all()
        nulls = connection.scalar(sa.select(sa.func.count()).where(flow_history.c.changes.is_(None)))
    assert [tuple(row) for row in stored] == [(10, NOW, None, snapshot), (11, NOW, changes, snapshot)]
    assert stored[0].occurred_at.utcoffset() == timedelta(0)
    assert nulls == 1, "a missing value is SQL NULL, not the JSON document null"


def test_days_enums_and_sequence_ids_are_stored_as_an_insert_would(engine: Engine) -> None:
    """`flow_changes`: a date column, a StrEnum stored as its value, and ids from the column's sequence."""
    history = {"id": 5, "run_id": None, "flow_id": 1, "occurred_at": NOW, "event": Event.CHANGED}
    change = {
        "history_id": 5,
        "run_id": None,
        "flow_id": 1,
        "occurred_at": NOW,
        "occurred_on": NOW.date(),
        "event": Event.CHANGED,
        "field": "name",
        "position": None,
        "attribute": "name",
        "change_kind": "modified",
        "old_value": None,
        "new_value": "x",
    }
    with engine.begin() as connection:
        insert_rows(connection, flow_history, [history])
        insert_rows(connection, flow_changes, [{**change, "change_no": n} for n in (1, 2)])
    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(flow_changes.c.id, flow_changes.c.occurred_on, flow_changes.c.event).order_by(
                flow_changes.c.id
            )
        ).all()
        as_text = connection.scalar(sa.select(sa.func.min(flow_changes.c.event)))
    assert [tuple(row) for row in stored] == [(1, NOW.date(), "changed"), (2, NOW.date(), "changed")]
    assert as_text == "changed", "the enum's value, not its name"


def test_a_naive_timestamp_is_refused(engine: Engine) -> None:
    row = {"run_id": None, "flow_id": 1, "occurred_at": NOW.replace(tzinfo=None), "event": "error"}
    refused = pytest.raises((ValueError, sa.exc.StatementError), match="naive datetime")
    with refused, engine.begin() as connection:
        insert_rows(connection, flow_history, [row])


def test_columns_left_out_get_their_python_side_defaults(engine: Engine) -> None:
    """`sync_runs`' counters default in Python, which COPY would not apply: such a table takes INSERTs."""
    run = {"started_at": NOW, "triggered_by": "manual", "status": "running"}
    with engine.begin() as connection:
        insert_rows(connection, sync_runs, [run, run])
    with engine.connect() as connection:
        counters = connection.execute(
            sa.select(sync_runs.c.flows_requested, sync_runs.c.flows_failed).order_by(sync_runs.c.id)
        ).all()
    assert [tuple(row) for row in counters] == [(0, 0), (0, 0)]


def test_rows_inserted_without_an_explicit_transaction_are_committed_with_it(engine: Engine) -> None:
    """SQLAlchemy's commit-as-you-go: the rows belong to the transaction `commit()` ends."""
    with engine.begin() as connection:
        connection.execute(flows.insert(), [_flow_row(1)])
    with engine.connect() as connection:
        insert_rows(connection, flow_nodes, _node_rows(1))
        connection.commit()
    assert _stored_nodes(engine) == _node_rows(1)


def test_no_rows_is_no_statement(engine: Engine) -> None:
    with engine.begin() as connection:
        insert_rows(connection, flow_nodes, [])
    assert _stored_nodes(engine) == []


def test_a_refused_row_rolls_back_every_row_and_is_a_database_error(engine: Engine) -> None:
    """A duplicate key in the last row: the error is SQLAlchemy's, and no row of the batch stays."""
    with engine.begin() as connection:
        connection.execute(flows.insert(), [_flow_row(1)])
    rows = _node_rows(1)
    with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
        insert_rows(connection, flow_nodes, [*rows, rows[0]])
    assert not caught.value.connection_invalidated
    assert _stored_nodes(engine) == []
    with engine.begin() as connection:  # the pooled connection is usable again
        insert_rows(connection, flow_nodes, rows)
    assert _stored_nodes(engine) == rows


@pytest.fixture
def postgres_engine(tmp_path: Path) -> Iterator[Engine]:
    with fresh_database("postgresql", tmp_path) as url:
        engine = create_engine(url)
        migrate.upgrade(engine)
        yield engine
        engine.dispose()


def test_a_session_that_dies_during_the_copy_is_a_lost_connection(postgres_engine: Engine) -> None:
    """The server ends the session mid-COPY (a trigger terminates its own backend, as a restart would)."""
    engine = postgres_engine
    with engine.begin() as connection:
        connection.exec_driver_sql(
            """CREATE FUNCTION end_session() RETURNS trigger AS $$
            BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$ LANGUAGE plpgsql"""
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER end_session BEFORE INSERT ON flow_nodes "
            "FOR EACH ROW EXECUTE FUNCTION end_session()"
        )
    with engine.begin() as connection:
        connection.execute(flows.insert(), [_flow_row(1)])
    with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
        insert_rows(connection, flow_nodes, _node_rows(1))
    assert caught.value.connection_invalidated, "a dead session must not look like a refused value"
    assert "terminating connection" in str(caught.value.orig), "the server's own reason"
    with engine.begin() as connection:
        connection.execute(flows.delete())
    # Through the writer: the run fails as a lost database instead of blaming the flow.
    run_id = writer.start_run(
        engine, NOW, triggered_by=Trigger.MANUAL, selection="1", requested=1, host="test", pid=1
    )
    snapshot = FlowSnapshot(1, "one", (NodeSnapshot(1, 0, 0, "sms", 0),))
    with pytest.raises(StoreError, match="lost the connection"):
        writer.write_results(engine, run_id, NOW, [Fetched(1, snapshot)])
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(flows)) == 0
