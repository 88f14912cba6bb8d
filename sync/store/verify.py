"""`flowsync verify`: recompute the audit chain and replay `flow_history` against every table derived from it.

Two passes over `flow_history`, each read in keyset slices inside one read-only
transaction (a consistent snapshot: REPEATABLE READ on the servers, one read
transaction on SQLite), so memory stays flat however long the history is:

1. in `id` order: each configuration event's `chain_hash` against the one recomputed
   from its columns and the previous event's hash (`sync.core.chain`); every run's
   `history_head` against the chain's head after the events written up to that run;
   every `flow_changes` row against the values its event's `changes` list holds;
2. flow by flow (`flow_id`, then `id`): `flows`, `flow_nodes`, `flow_versions` and
   `flow_version_nodes` against the replay of the flow's events (`sync.core.audit`).

After a hash that does not match, the chain goes on from the stored hash, so an edited
event is reported once and a removed one at the event after the gap. Every difference is
yielded as a `Disagreement` the moment it is found; `Verification.summary` says what was
checked once they are all out. A row that cannot be decoded is reported by its key and
the rest are still checked.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from sync.core.audit import Disagreement, FailedFetch, FlowReplay, compare_rows, differences, shown
from sync.core.chain import ChainedEvent, ChainHasher, is_chained
from sync.core.snapshot import from_json
from sync.core.versions import EventRows, HistoryEvent, changed_values
from sync.errors import StoreError
from sync.store.database import READ_ONLY, safe_url, short_error
from sync.store.schema import (
    flow_changes,
    flow_history,
    flow_nodes,
    flow_version_nodes,
    flow_versions,
    flows,
    sync_runs,
)
from sync.store.sqltypes import UtcDateTime, raw_columns, stored_timestamp
from sync.vocabulary import Event, RunStatus

PAGE_ROWS = 5000
TABLES = (
    "flow_history",
    "sync_runs",
    "flow_changes",
    "flows",
    "flow_nodes",
    "flow_versions",
    "flow_version_nodes",
)


@dataclass
class VerifySummary:
    """What was checked: the chain's kind and head, how many events; filled as the passes run."""

    chain: str
    head: str | None = None
    events: int = 0
    configuration_events: int = 0
    disagreements: int = 0
    tables: tuple[str, ...] = TABLES

    @property
    def ok(self) -> bool:
        return self.disagreements == 0


@dataclass
class Verification:
    """Iterate it for the disagreements; `summary` is complete once the iteration is."""

    engine: Engine
    chain: ChainHasher
    page_rows: int = PAGE_ROWS
    summary: VerifySummary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = VerifySummary(chain=self.chain.kind)

    def __iter__(self) -> Iterator[Disagreement]:
        options: dict[str, Any] = dict(READ_ONLY)
        if self.engine.dialect.name != "sqlite":
            options["isolation_level"] = "REPEATABLE READ"
        try:
            with self.engine.connect().execution_options(**options) as connection, connection.begin():
                reader = _Reader(connection, self.page_rows)
                for problem in _by_id(reader, self.chain, self.summary):
                    self.summary.disagreements += 1
                    yield problem
                for problem in _by_flow(reader):
                    self.summary.disagreements += 1
                    yield problem
        except SQLAlchemyError as exc:
            where = safe_url(self.engine.url)
            raise StoreError(f"cannot read the database at {where}: {short_error(exc)}") from exc


class _Reader:
    """Keyset-paged reads on one connection: each page is fetched whole before its rows are used."""

    def __init__(self, connection: Connection, page_rows: int) -> None:
        self.connection = connection
        self.page_rows = page_rows

    def rows(self, query: sa.Select[Any], keys: Sequence[sa.ColumnElement[Any]]) -> Iterator[sa.Row[Any]]:
        """`query`'s rows in `keys` order; each page starts after the last row of the one before."""
        page = query.order_by(*keys).limit(self.page_rows)
        after: tuple[Any, ...] | None = None
        while True:
            rows = self.connection.execute(page if after is None else page.where(_after(keys, after))).all()
            yield from rows
            if len(rows) < self.page_rows:
                return
            after = tuple(rows[-1]._mapping[key] for key in keys)


def _after(keys: Sequence[sa.ColumnElement[Any]], values: tuple[Any, ...]) -> sa.ColumnElement[bool]:
    """`keys > values` in row order, spelled out (`a > x OR (a = x AND b > y)`) for every optimizer."""
    head, *rest = keys
    if not rest:
        return sa.and_(head > values[0])
    return sa.or_(head > values[0], sa.and_(head == values[0], _after(rest, values[1:])))


class _Undecodable(ValueError):
    """A stored value that is not what its column holds."""


def _timestamp(value: object, column: str) -> datetime | None:
    if value is None:
        return None
    try:
        return stored_timestamp(value)
    except ValueError:
        raise _Undecodable(f"{column} is not a timestamp") from None


def _day(value: object, column: str) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _Undecodable(f"{column} is not a date") from None


def _document(value: object, column: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value) if isinstance(value, str | bytes) else value
    except (ValueError, RecursionError):
        raise _Undecodable(f"{column} is not valid JSON") from None


@dataclass(frozen=True, slots=True)
class _Event:
    """A decoded `flow_history` row."""

    id: int
    run_id: int | None
    flow_id: int | None
    occurred_at: datetime
    event: str
    changes: Any
    snapshot: Any
    content_hash: str | None
    chain_hash: str | None
    error_kind: str | None
    error_code: str | None

    def chained(self) -> ChainedEvent:
        return ChainedEvent(
            id=self.id,
            run_id=self.run_id,
            flow_id=self.flow_id,
            occurred_at=self.occurred_at,
            event=self.event,
            changes=self.changes,
            snapshot=self.snapshot,
            content_hash=self.content_hash,
        )

    def history_event(self) -> HistoryEvent:
        """As the version ledger reads it; `_Undecodable` when its documents are not what they must be."""
        try:
            snapshot = from_json(self.snapshot) if self.snapshot is not None else None
        except (KeyError, TypeError, ValueError):
            raise _Undecodable("snapshot is not a flow configuration") from None
        changes = self.changes if self.changes is not None else []
        if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
            raise _Undecodable("changes is not a list of changes")
        if self.flow_id is None:
            raise _Undecodable("a configuration event without a flow_id")
        return HistoryEvent(
            history_id=self.id,
            run_id=self.run_id,
            flow_id=self.flow_id,
            occurred_at=self.occurred_at,
            event=Event(self.event),
            snapshot=snapshot,
            changes=changes,
        )


def _decode(row: sa.Row[Any]) -> _Event:
    """`_Undecodable` names the first column that does not decode."""
    occurred_at = _timestamp(row.occurred_at, "occurred_at")
    if occurred_at is None:
        raise _Undecodable("occurred_at is null")
    return _Event(
        id=row.id,
        run_id=row.run_id,
        flow_id=row.flow_id,
        occurred_at=occurred_at,
        event=row.event,
        changes=_document(row.changes, "changes"),
        snapshot=_document(row.snapshot, "snapshot"),
        content_hash=row.content_hash,
        chain_hash=row.chain_hash,
        error_kind=row.error_kind,
        error_code=row.error_code,
    )


_KNOWN_EVENTS = {str(e) for e in Event}
_HISTORY_COLUMNS = [
    c
    for c in raw_columns(flow_history)
    if c.name
    in (
        "id",
        "run_id",
        "flow_id",
        "occurred_at",
        "event",
        "changes",
        "snapshot",
        "content_hash",
        "chain_hash",
        "error_kind",
        "error_code",
    )
]


def _history_key(row_id: int) -> str:
    return f"id={row_id}"


# Pass 1: the chain, the runs' heads and the changed values, in id order.


def _by_id(reader: _Reader, chain: ChainHasher, summary: VerifySummary) -> Iterator[Disagreement]:
    runs = _RunHeads(reader)
    changes = _ChangeRows(reader)
    head: str | None = None
    for row in reader.rows(sa.select(*_HISTORY_COLUMNS), [flow_history.c.id]):
        summary.events += 1
        if row.event not in _KNOWN_EVENTS:
            yield Disagreement("flow_history", _history_key(row.id), f"event {shown(row.event)} is unknown")
            continue
        if not is_chained(row.event):
            if row.chain_hash is not None:
                yield Disagreement(
                    "flow_history",
                    _history_key(row.id),
                    "an error event carries a chain_hash (errors are not chained)",
                )
            continue
        summary.configuration_events += 1
        if row.run_id is not None:
            yield from runs.settle_before(row.run_id, head)
        try:
            event = _decode(row)
        except _Undecodable as exc:
            yield Disagreement("flow_history", _history_key(row.id), f"cannot be decoded: {exc}")
            head = row.chain_hash or head
            continue
        if row.chain_hash is None:
            yield Disagreement(
                "flow_history",
                _history_key(row.id),
                "a configuration event without a chain_hash: it was added outside flowsync's writer",
            )
        else:
            expected = chain.link(head, event.chained())
            if expected != row.chain_hash:
                yield Disagreement(
                    "flow_history",
                    _history_key(row.id),
                    f"chain_hash does not match: this event, or the chain before it, was edited, inserted, "
                    f"removed or reordered (stored {row.chain_hash}, recomputed {expected})",
                )
            head = row.chain_hash
        if event.event in (Event.CHANGED, Event.RESTORED):
            try:
                yield from changes.check(event)
            except _Undecodable as exc:
                yield Disagreement("flow_history", _history_key(row.id), f"cannot be decoded: {exc}")
    yield from runs.settle_before(None, head)
    yield from changes.rest()
    summary.head = head


class _RunHeads:
    """Each run's `history_head` against the chain's head after the events up to that run."""

    def __init__(self, reader: _Reader) -> None:
        query = sa.select(sync_runs.c.id, sync_runs.c.status, sync_runs.c.history_head)
        self.runs = reader.rows(query, [sync_runs.c.id])
        self.next = next(self.runs, None)

    def settle_before(self, run_id: int | None, head: str | None) -> Iterator[Disagreement]:
        while self.next is not None and (run_id is None or self.next.id < run_id):
            run, self.next = self.next, next(self.runs, None)
            if run.history_head == head or (run.history_head is None and run.status == RunStatus.RUNNING):
                continue
            yield Disagreement(
                "sync_runs",
                f"id={run.id}",
                f"history_head is {shown(run.history_head)}, but the chain's head after this run's events is "
                f"{shown(head)}: configuration events were removed, added or altered"
                if run.history_head is not None
                else "history_head is null, but the run ended",
            )


class _ChangeRows:
    """`flow_changes` in (`history_id`, `change_no`) order, merged with the events that derive them."""

    KEYS = ("history_id", "change_no")

    def __init__(self, reader: _Reader) -> None:
        self.rows = reader.rows(
            sa.select(*raw_columns(flow_changes)), [flow_changes.c.history_id, flow_changes.c.change_no]
        )
        self.next = next(self.rows, None)

    def _take_through(self, history_id: int) -> tuple[list[Disagreement], list[dict[str, Any]]]:
        """Rows of events before `history_id` that no event accounted for, and the rows of `history_id`."""
        stray: list[Disagreement] = []
        own: list[dict[str, Any]] = []
        while self.next is not None and self.next.history_id <= history_id:
            row, self.next = self.next, next(self.rows, None)
            if row.history_id < history_id:
                stray.append(self._unexpected(row))
                continue
            try:
                own.append(self._decoded(row))
            except _Undecodable as exc:
                stray.append(Disagreement("flow_changes", self._key(row), f"cannot be decoded: {exc}"))
        return stray, own

    def check(self, event: _Event) -> Iterator[Disagreement]:
        history_event = event.history_event()
        expected = EventRows(changed_values=changed_values(history_event.changes)).change_rows(history_event)
        stray, own = self._take_through(event.id)
        yield from stray
        yield from compare_rows("flow_changes", self.KEYS, expected, own)

    def rest(self) -> Iterator[Disagreement]:
        while self.next is not None:
            row, self.next = self.next, next(self.rows, None)
            yield self._unexpected(row)

    def _unexpected(self, row: sa.Row[Any]) -> Disagreement:
        return Disagreement(
            "flow_changes",
            self._key(row),
            "unexpected: no changed or restored event in flow_history holds it",
        )

    @staticmethod
    def _key(row: sa.Row[Any]) -> str:
        return f"history_id={row.history_id}, change_no={row.change_no}"

    @staticmethod
    def _decoded(row: sa.Row[Any]) -> dict[str, Any]:
        values = dict(row._mapping)
        values.pop("id", None)
        values["occurred_at"] = _timestamp(values["occurred_at"], "occurred_at")
        values["occurred_on"] = _day(values["occurred_on"], "occurred_on")
        return values


# Pass 2: flow by flow.


_FLOW_TABLES: tuple[tuple[sa.Table, tuple[str, ...]], ...] = (
    (flows, ("flow_id",)),
    (flow_nodes, ("flow_id", "position")),
    (flow_versions, ("flow_id", "version_no")),
    (flow_version_nodes, ("flow_id", "version_no", "position")),
)


def _grouped(rows: Iterator[sa.Row[Any]]) -> Iterator[tuple[int, list[sa.Row[Any]]]]:
    """Consecutive rows of one flow together; the rows come in flow order."""
    flow_id: int | None = None
    group: list[sa.Row[Any]] = []
    for row in rows:
        if row.flow_id != flow_id and group:
            assert flow_id is not None
            yield flow_id, group
            group = []
        flow_id = row.flow_id
        group.append(row)
    if group and flow_id is not None:
        yield flow_id, group


def _by_flow(reader: _Reader) -> Iterator[Disagreement]:
    history = reader.rows(
        sa.select(*_HISTORY_COLUMNS).where(flow_history.c.flow_id.is_not(None)),
        [flow_history.c.flow_id, flow_history.c.id],
    )
    streams: list[Iterator[tuple[int, list[sa.Row[Any]]]]] = [_grouped(history)]
    for table, keys in _FLOW_TABLES:
        streams.append(_grouped(reader.rows(sa.select(*raw_columns(table)), [table.c[k] for k in keys])))
    # Merge the streams on flow_id: each flow's rows of every table arrive together.
    merged = heapq.merge(*(_numbered(index, stream) for index, stream in enumerate(streams)))
    current: int | None = None
    groups: list[list[sa.Row[Any]]] = [[] for _ in streams]
    for flow_id, index, rows in merged:
        if flow_id != current and current is not None:
            yield from _check_flow(current, *groups)
            groups = [[] for _ in streams]
        current = flow_id
        groups[index] = rows
    if current is not None:
        yield from _check_flow(current, *groups)


def _numbered(
    index: int, stream: Iterator[tuple[int, list[sa.Row[Any]]]]
) -> Iterator[tuple[int, int, list[sa.Row[Any]]]]:
    """Each group with its stream's number, so the merge never compares rows."""
    for flow_id, rows in stream:
        yield flow_id, index, rows


def _check_flow(  # noqa: PLR0917 - one list of rows per table, in _FLOW_TABLES' order
    flow_id: int,
    events: list[sa.Row[Any]],
    flow_rows: list[sa.Row[Any]],
    node_rows: list[sa.Row[Any]],
    version_rows: list[sa.Row[Any]],
    version_node_rows: list[sa.Row[Any]],
) -> Iterator[Disagreement]:
    replay = FlowReplay(flow_id)
    for row in events:
        try:
            event = _decode(row)
            if event.event == Event.ERROR:
                replay.fail(FailedFetch(event.occurred_at, event.error_kind, event.error_code))
            elif event.event in _KNOWN_EVENTS:
                replay.apply(event.history_event())
        except _Undecodable:
            continue  # reported by the first pass
    key = f"flow_id={flow_id}"
    flow = flow_rows[0] if flow_rows else None
    if flow is None:
        if replay.stored:
            yield Disagreement("flows", key, "missing: flow_history has configuration events of this flow")
    elif not replay.stored:
        yield Disagreement(
            "flows", key, "unexpected: no configuration event in flow_history stored this flow"
        )
    else:
        try:
            stored = _decoded(flow, flows)
        except _Undecodable as exc:
            yield Disagreement("flows", key, f"cannot be decoded: {exc}")
        else:
            for difference in differences(replay.flow_row(), stored) + replay.streak_problems(stored):
                yield Disagreement("flows", key, difference)
    yield from _compare("flow_nodes", ("flow_id", "position"), replay.node_rows(), node_rows, flow_nodes)
    yield from _compare(
        "flow_versions",
        ("flow_id", "version_no"),
        list(replay.versions.values()),
        version_rows,
        flow_versions,
    )
    yield from _compare(
        "flow_version_nodes",
        ("flow_id", "version_no", "position"),
        replay.version_nodes,
        version_node_rows,
        flow_version_nodes,
    )


def _compare(
    name: str, keys: tuple[str, ...], expected: list[dict[str, Any]], rows: list[sa.Row[Any]], table: sa.Table
) -> Iterator[Disagreement]:
    stored: list[dict[str, Any]] = []
    for row in rows:
        try:
            stored.append(_decoded(row, table))
        except _Undecodable as exc:
            key = ", ".join(f"{k}={row._mapping[k]}" for k in keys)
            yield Disagreement(name, key, f"cannot be decoded: {exc}")
    yield from compare_rows(name, keys, expected, stored)


def _decoded(row: sa.Row[Any], table: sa.Table) -> dict[str, Any]:
    values = dict(row._mapping)
    for name in _TIMESTAMPS[table.name]:
        values[name] = _timestamp(values[name], name)
    return values


_TIMESTAMPS = {
    table.name: [c.name for c in table.columns if isinstance(c.type, UtcDateTime)]
    for table in (flows, flow_nodes, flow_versions, flow_version_nodes)
}
