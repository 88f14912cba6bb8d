"""What `status`, `history` and `show` read: the latest runs, every flow's state, the events, one flow.

A row damaged by hand or by another tool must not hide every other row. So the columns
whose stored form a database does not check (JSON documents, and timestamps, which SQLite
keeps as text and MariaDB may keep as a zero date) are read as the driver gives them and
decoded here, one row at a time. A value that does not decode becomes a `Corrupt` marker
in its place, saying what is wrong with it, and the other values and rows read as usual.
The wording of what is shown lives with the command line (`sync.cli.wording`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from sync.core.diff import Change
from sync.core.selection import FlowSelection, parse_flow_ids
from sync.store.database import reading
from sync.store.schema import (
    flow_history,
    flow_nodes,
    flow_version_nodes,
    flow_versions,
    flows,
    sync_runs,
)
from sync.store.sqltypes import UtcDateTime, raw_columns, stored_timestamp
from sync.vocabulary import Event, RunStatus, SyncState

NODE_COLUMNS = ("position", "waiting_time", "status", "channel", "channel_cut")


@dataclass(frozen=True, slots=True)
class Corrupt:
    """A stored value that cannot be read as what its column holds; `problem` completes "<column> ..."."""

    problem: str

    def __str__(self) -> str:
        return "corrupt"


@dataclass(frozen=True, slots=True)
class FlowFailure:
    """One flow's failed fetch in a run: its `flow_history` error columns."""

    flow_id: int
    error_kind: str | None
    error_code: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class NeverFetched:
    """A requested flow with no `flows` row: every fetch of it failed, or none was tried yet."""

    flow_id: int
    attempts: int  # its `error` events
    last_error: FlowFailure | None
    last_attempt_at: datetime | Corrupt | None


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Runs and flows as column-name dicts; a timestamp that does not decode is a `Corrupt` value.

    `run_failures` holds, for each `partial` run shown, its first few failed flows (`failed_shown`
    of them at most); `never_fetched` the first requested flows that have no `flows` row, out of
    `never_fetched_total`, and `requested` the selection they were counted against.
    """

    runs: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    flows_total: int
    states: dict[str, int]
    run_failures: dict[int, list[FlowFailure]] = field(default_factory=dict)
    never_fetched: list[NeverFetched] = field(default_factory=list)
    never_fetched_total: int = 0
    requested: FlowSelection | None = None


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """One flow's configuration now or as of an instant, with the version it belongs to.

    `nodes` hold the `flow_nodes` columns. `deleted_at` is set when the flow was deleted at
    that time (it then shows its last configuration before the deletion); `sync_state` and
    `last_error` are the `flows` row's, for the configuration now only.
    """

    flow_id: int
    name: str
    nodes: list[dict[str, Any]]
    version_no: int | None
    valid_from: datetime | Corrupt | None
    valid_to: datetime | Corrupt | None
    deleted_at: datetime | Corrupt | None
    as_of: datetime | None = None
    sync_state: str | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class NoConfig:
    """No configuration to show: the flow is unknown (`first_seen` None) or was first seen after `as_of`."""

    flow_id: int
    as_of: datetime | None
    first_seen: datetime | Corrupt | None


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


def status(
    engine: Engine,
    *,
    runs: int = 10,
    flow_limit: int | None = 100,
    requested: FlowSelection | None = None,
    failed_shown: int = 3,
    never_fetched_limit: int = 100,
) -> StatusReport:
    """The latest runs, and flows with problems first, then by ID.

    `requested` is the selection whose never-fetched flows are listed (`never_fetched_limit` of
    them at most, all counted); without it, the latest run's selection. `all` lists none: in that
    mode a flow is requested because the list returned it, and a listed flow is stored or has an
    error event.
    """
    with reading(engine) as connection:
        run_rows = [
            _decoded(row, sync_runs)
            for row in connection.execute(
                sa.select(*raw_columns(sync_runs)).order_by(sync_runs.c.id.desc()).limit(runs)
            )
        ]
        states: dict[str, int] = dict(
            connection.execute(
                sa.select(flows.c.sync_state, sa.func.count()).group_by(flows.c.sync_state)
            ).all()
        )
        problems_first = sa.case((flows.c.sync_state == SyncState.OK, 1), else_=0)
        query = sa.select(*raw_columns(flows)).order_by(problems_first, flows.c.flow_id)
        if flow_limit is not None:
            query = query.limit(flow_limit)
        run_failures = {
            run["id"]: _run_failures(connection, run["id"], failed_shown)
            for run in run_rows
            if run["status"] == RunStatus.PARTIAL
        }
        if requested is None:
            requested = _latest_selection(connection)
        never, never_total = _never_fetched(connection, requested, never_fetched_limit)
        return StatusReport(
            runs=run_rows,
            flows=[_decoded(row, flows) for row in connection.execute(query)],
            flows_total=sum(states.values()),
            states={str(k): int(v) for k, v in states.items()},
            run_failures=run_failures,
            never_fetched=never,
            never_fetched_total=never_total,
            requested=requested,
        )


def _run_failures(connection: Connection, run_id: int, limit: int) -> list[FlowFailure]:
    rows = connection.execute(
        sa.select(
            flow_history.c.flow_id,
            flow_history.c.error_kind,
            flow_history.c.error_code,
            flow_history.c.error_message,
        )
        .where(
            flow_history.c.run_id == run_id,
            flow_history.c.event == Event.ERROR,
            flow_history.c.flow_id.is_not(None),
        )
        .order_by(flow_history.c.flow_id, flow_history.c.id)
        .limit(limit)
    )
    return [FlowFailure(*row) for row in rows]


def _latest_selection(connection: Connection) -> FlowSelection | None:
    """The flow IDs the latest run was asked for; None before any run or when its text does not parse."""
    text = connection.scalar(
        sa.select(sync_runs.c.flow_selection)
        .where(sync_runs.c.flow_selection.is_not(None))
        .order_by(sync_runs.c.id.desc())
        .limit(1)
    )
    try:
        return parse_flow_ids(text) if text else None
    except ValueError:
        return None


def _never_fetched(
    connection: Connection, requested: FlowSelection | None, limit: int
) -> tuple[list[NeverFetched], int]:
    """The first `limit` requested flows without a `flows` row, and how many there are in all."""
    if requested is None or requested.everything:
        return [], 0
    stored: set[int] = set()
    for low, high in requested.ranges:
        stored.update(
            connection.scalars(sa.select(flows.c.flow_id).where(flows.c.flow_id.between(low, high)))
        )
    total = len(requested) - len(stored)
    missing: list[int] = []
    for flow_id in requested:
        if len(missing) in (total, limit):
            break
        if flow_id not in stored:
            missing.append(flow_id)
    if not missing:
        return [], total
    attempts: dict[int, tuple[int, int]] = {}
    for start in range(0, len(missing), 500):  # bounded IN lists
        chunk = missing[start : start + 500]
        for flow_id, count, last_id in connection.execute(
            sa.select(flow_history.c.flow_id, sa.func.count(), sa.func.max(flow_history.c.id))
            .where(flow_history.c.flow_id.in_(chunk), flow_history.c.event == Event.ERROR)
            .group_by(flow_history.c.flow_id)
        ):
            attempts[int(flow_id)] = (int(count), int(last_id))
    last: dict[int, Row[Any]] = {}
    last_ids = [last_id for _, last_id in attempts.values()]
    for start in range(0, len(last_ids), 500):
        for row in connection.execute(
            sa.select(
                flow_history.c.flow_id,
                flow_history.c.error_kind,
                flow_history.c.error_code,
                flow_history.c.error_message,
                sa.type_coerce(flow_history.c.occurred_at, sa.Text()).label("occurred_at"),
            ).where(flow_history.c.id.in_(last_ids[start : start + 500]))
        ):
            last[int(row.flow_id)] = row
    found = []
    for flow_id in missing:
        latest = last.get(flow_id)
        found.append(
            NeverFetched(
                flow_id=flow_id,
                attempts=attempts.get(flow_id, (0, 0))[0],
                last_error=FlowFailure(flow_id, latest.error_kind, latest.error_code, latest.error_message)
                if latest is not None
                else None,
                last_attempt_at=_timestamp(latest.occurred_at) if latest is not None else None,
            )
        )
    return found, total


def flow_config(engine: Engine, flow_id: int, as_of: datetime | None = None) -> FlowConfig | NoConfig:
    """The flow's configuration now (`flows`, `flow_nodes`) or as of `as_of` (`flow_versions`)."""
    with reading(engine) as connection:
        if as_of is None:
            return _config_now(connection, flow_id)
        return _config_as_of(connection, flow_id, as_of)


def _config_now(connection: Connection, flow_id: int) -> FlowConfig | NoConfig:
    row = connection.execute(sa.select(*raw_columns(flows)).where(flows.c.flow_id == flow_id)).first()
    if row is None:
        return NoConfig(flow_id, None, None)
    flow = _decoded(row, flows)
    nodes = connection.execute(
        sa.select(*(flow_nodes.c[name] for name in NODE_COLUMNS))
        .where(flow_nodes.c.flow_id == flow_id)
        .order_by(flow_nodes.c.position)
    )
    version = connection.execute(
        sa.select(flow_versions.c.version_no, *_stored_times(flow_versions, "valid_from", "valid_to"))
        .where(flow_versions.c.flow_id == flow_id)
        .order_by(flow_versions.c.version_no.desc())
        .limit(1)
    ).first()
    deleted = flow["sync_state"] == SyncState.DELETED
    return FlowConfig(
        flow_id=flow_id,
        name=flow["name"],
        nodes=[dict(node._mapping) for node in nodes],
        version_no=version.version_no if version is not None else None,
        valid_from=_timestamp(version.valid_from) if version is not None else None,
        valid_to=_timestamp(version.valid_to) if version is not None else None,
        deleted_at=(flow["deleted_at"] or Corrupt("is missing")) if deleted else None,
        sync_state=flow["sync_state"],
        last_error=flow["last_error"],
    )


def _config_as_of(connection: Connection, flow_id: int, as_of: datetime) -> FlowConfig | NoConfig:
    version = connection.execute(
        sa.select(
            flow_versions.c.version_no,
            flow_versions.c.name,
            flow_versions.c.closed_by_event,
            *_stored_times(flow_versions, "valid_from", "valid_to"),
        )
        .where(flow_versions.c.flow_id == flow_id, flow_versions.c.valid_from <= as_of)
        .order_by(flow_versions.c.version_no.desc())
        .limit(1)
    ).first()
    if version is None:
        first_seen = connection.scalar(
            sa.select(sa.type_coerce(sa.func.min(flow_versions.c.valid_from), sa.Text())).where(
                flow_versions.c.flow_id == flow_id
            )
        )
        return NoConfig(flow_id, as_of, _timestamp(first_seen))
    nodes = connection.execute(
        sa.select(*(flow_version_nodes.c[name] for name in NODE_COLUMNS))
        .where(
            flow_version_nodes.c.flow_id == flow_id,
            flow_version_nodes.c.version_no == version.version_no,
        )
        .order_by(flow_version_nodes.c.position)
    )
    valid_to = _timestamp(version.valid_to)
    # A version closed at or before the instant, with no later one opened by then, was closed by a deletion.
    deleted = isinstance(valid_to, datetime) and valid_to <= as_of
    return FlowConfig(
        flow_id=flow_id,
        name=version.name,
        nodes=[dict(node._mapping) for node in nodes],
        version_no=version.version_no,
        valid_from=_timestamp(version.valid_from),
        valid_to=valid_to,
        deleted_at=valid_to if deleted else None,
        as_of=as_of,
    )


def _stored_times(table: sa.Table, *names: str) -> list[sa.ColumnElement[Any]]:
    return [sa.type_coerce(table.c[name], sa.Text()).label(name) for name in names]


def history(
    engine: Engine, *, flow_id: int | None = None, run_id: int | None = None, limit: int | None = 50
) -> list[HistoryEntry]:
    """Events newest first."""
    with reading(engine) as connection:
        return _history_page(connection, flow_id=flow_id, run_id=run_id, before_id=None, limit=limit)


def history_pages(
    engine: Engine, *, flow_id: int | None = None, run_id: int | None = None, page_size: int = 500
) -> Iterator[list[HistoryEntry]]:
    """Events newest first, a page at a time, each page its own short read (no transaction held open)."""
    before_id: int | None = None
    while True:
        with reading(engine) as connection:
            page = _history_page(
                connection, flow_id=flow_id, run_id=run_id, before_id=before_id, limit=page_size
            )
        if not page:
            return
        yield page
        if len(page) < page_size:
            return
        before_id = page[-1].id


def error_streak(
    engine: Engine, newest: HistoryEntry, *, run_id: int | None = None
) -> tuple[int, datetime | Corrupt | None]:
    """How many errors identical to `newest` (same flow, kind, code and message) end at it with no
    other event of that flow between them, and when the first of them occurred."""
    h = flow_history.c
    identical = sa.and_(
        h.event == Event.ERROR,
        h.error_kind.is_not_distinct_from(newest.error_kind),
        h.error_code.is_not_distinct_from(newest.error_code),
        h.error_message.is_not_distinct_from(newest.error_message),
    )
    scope = [h.flow_id == newest.flow_id] + ([h.run_id == run_id] if run_id is not None else [])
    boundary = (
        sa.select(sa.func.coalesce(sa.func.max(h.id), 0))
        .where(*scope, h.id < newest.id, sa.not_(identical))
        .scalar_subquery()
    )
    with reading(engine) as connection:
        count, first = connection.execute(
            sa.select(sa.func.count(), sa.type_coerce(sa.func.min(h.occurred_at), sa.Text())).where(
                *scope, identical, h.id <= newest.id, h.id > boundary
            )
        ).one()
    return int(count), _timestamp(first)


def _history_page(
    connection: Connection,
    *,
    flow_id: int | None,
    run_id: int | None,
    before_id: int | None,
    limit: int | None,
) -> list[HistoryEntry]:
    query = (
        sa.select(*raw_columns(flow_history), flows.c.name.label("current_name"))
        .select_from(flow_history.outerjoin(flows, flows.c.flow_id == flow_history.c.flow_id))
        .order_by(flow_history.c.id.desc())
    )
    if flow_id is not None:
        query = query.where(flow_history.c.flow_id == flow_id)
    if run_id is not None:
        query = query.where(flow_history.c.run_id == run_id)
    if before_id is not None:
        query = query.where(flow_history.c.id < before_id)
    if limit is not None:
        query = query.limit(limit)
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


def unknown(engine: Engine, *, flow_id: int | None = None, run_id: int | None = None) -> list[str]:
    """Which of a run and a flow the database has never held: `run 7`, `flow 12` (empty when both exist).

    A flow is known when it has a `flows` row or any event (a flow whose every fetch failed has only
    `error` events).
    """
    missing = []
    with reading(engine) as connection:
        if (
            run_id is not None
            and connection.scalar(
                sa.select(sa.func.count()).select_from(sync_runs).where(sync_runs.c.id == run_id)
            )
            == 0
        ):
            missing.append(f"run {run_id}")
        if flow_id is not None:
            stored = connection.scalar(
                sa.select(sa.func.count()).select_from(flows).where(flows.c.flow_id == flow_id)
            )
            events = connection.scalar(
                sa.select(flow_history.c.id).where(flow_history.c.flow_id == flow_id).limit(1)
            )
            if stored == 0 and events is None:
                missing.append(f"flow {flow_id}")
    return missing


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
