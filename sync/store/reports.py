"""What `status` and `history` read: the latest runs, every flow's state, and the events.

A row damaged by hand or by another tool must not hide every other row. So the columns
whose stored form a database does not check (JSON documents, and timestamps, which SQLite
keeps as text and MariaDB may keep as a zero date) are read as the driver gives them and
decoded here, one row at a time. A value that does not decode becomes a `Corrupt` marker
in its place, saying what is wrong with it, and the other values and rows read as usual.
The wording of what is shown lives with the command line (`sync.cli.wording`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from sync.core.diff import Change
from sync.store.database import reading
from sync.store.schema import flow_history, flows, sync_runs
from sync.store.sqltypes import UtcDateTime, stored_timestamp
from sync.vocabulary import SyncState


@dataclass(frozen=True, slots=True)
class Corrupt:
    """A stored value that cannot be read as what its column holds; `problem` completes "<column> ..."."""

    problem: str

    def __str__(self) -> str:
        return "corrupt"


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Runs and flows as column-name dicts; a timestamp that does not decode is a `Corrupt` value."""

    runs: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    flows_total: int
    states: dict[str, int]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One `flow_history` row, its JSON decoded and checked; `current_name` is the flow's name now."""

    id: int
    occurred_at: datetime | Corrupt | None
    run_id: int | None
    flow_id: int | None
    event: str
    snapshot: dict[str, Any] | Corrupt | None
    changes: list[Change] | Corrupt | None
    error_kind: str | None
    error_code: str | None
    error_message: str | None
    current_name: str | None

    def problems(self) -> list[str]:
        """What is corrupt in this row, each as "<column> <problem>"; empty when it read cleanly."""
        values = {"occurred_at": self.occurred_at, "snapshot": self.snapshot, "changes": self.changes}
        return [f"{column} {value.problem}" for column, value in values.items() if isinstance(value, Corrupt)]


def status(engine: Engine, *, runs: int = 10, flow_limit: int | None = 100) -> StatusReport:
    """The latest runs, and flows with problems first, then by ID."""
    with reading(engine) as connection:
        run_rows = connection.execute(
            sa.select(*_as_stored(sync_runs)).order_by(sync_runs.c.id.desc()).limit(runs)
        )
        states: dict[str, int] = dict(
            connection.execute(
                sa.select(flows.c.sync_state, sa.func.count()).group_by(flows.c.sync_state)
            ).all()
        )
        problems_first = sa.case((flows.c.sync_state == SyncState.OK, 1), else_=0)
        query = sa.select(*_as_stored(flows)).order_by(problems_first, flows.c.flow_id)
        if flow_limit is not None:
            query = query.limit(flow_limit)
        return StatusReport(
            runs=[_decoded(row, sync_runs) for row in run_rows],
            flows=[_decoded(row, flows) for row in connection.execute(query)],
            flows_total=sum(states.values()),
            states={str(k): int(v) for k, v in states.items()},
        )


def history(
    engine: Engine, *, flow_id: int | None = None, run_id: int | None = None, limit: int | None = 50
) -> list[HistoryEntry]:
    """Events newest first."""
    query = (
        sa.select(*_as_stored(flow_history), flows.c.name.label("current_name"))
        .select_from(flow_history.outerjoin(flows, flows.c.flow_id == flow_history.c.flow_id))
        .order_by(flow_history.c.id.desc())
    )
    if flow_id is not None:
        query = query.where(flow_history.c.flow_id == flow_id)
    if run_id is not None:
        query = query.where(flow_history.c.run_id == run_id)
    if limit is not None:
        query = query.limit(limit)
    with reading(engine) as connection:
        return [
            HistoryEntry(
                id=row.id,
                occurred_at=_timestamp(row.occurred_at),
                run_id=row.run_id,
                flow_id=row.flow_id,
                event=row.event,
                snapshot=_snapshot(row.snapshot),
                changes=_changes(row.changes),
                error_kind=row.error_kind,
                error_code=row.error_code,
                error_message=row.error_message,
                current_name=row.current_name,
            )
            for row in connection.execute(query)
        ]


def _as_stored(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    """The table's columns, with timestamps as the driver returns them and JSON as text, to decode per row."""
    columns: list[sa.ColumnElement[Any]] = []
    for column in table.columns:
        if isinstance(column.type, UtcDateTime):
            columns.append(sa.type_coerce(column, sa.Text()).label(column.name))
        elif isinstance(column.type, sa.JSON):
            columns.append(sa.cast(column, sa.Text).label(column.name))
        else:
            columns.append(column)
    return columns


def _decoded(row: Row[Any], table: sa.Table) -> dict[str, Any]:
    values = dict(row._mapping)
    for column in table.columns:
        if isinstance(column.type, UtcDateTime):
            values[column.name] = _timestamp(values[column.name])
    return values


def _timestamp(stored: object) -> datetime | Corrupt | None:
    """A UTC datetime from what the driver returned: a datetime, or text (SQLite; zero dates on MariaDB)."""
    if stored is None:
        return None
    try:
        return stored_timestamp(stored)
    except ValueError:
        return Corrupt("is not a timestamp")


def _json(stored: str | None) -> object:
    """The decoded document; `Corrupt` when the text is not JSON."""
    if stored is None:
        return None
    try:
        return json.loads(stored)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return Corrupt("is not valid JSON")


def _snapshot(stored: str | None) -> dict[str, Any] | Corrupt | None:
    document = _json(stored)
    if document is None or isinstance(document, Corrupt):
        return document
    if not isinstance(document, dict):
        return Corrupt("is not a JSON object")
    if not isinstance(document.get("name", ""), str | None):
        return Corrupt("has a name that is not a string")
    if not isinstance(document.get("nodes", []), list):
        return Corrupt("has nodes that are not a list")
    return document


def _changes(stored: str | None) -> list[Change] | Corrupt | None:
    document = _json(stored)
    if document is None or isinstance(document, Corrupt):
        return document
    if not isinstance(document, list):
        return Corrupt("is not a JSON list")
    for number, change in enumerate(document, start=1):
        if not (isinstance(change, dict) and isinstance(change.get("field"), str)):
            return Corrupt(f"item {number} is not an object with a field name")
    return cast(list[Change], document)
