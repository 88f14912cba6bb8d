"""Pruning: deleting old `error` events, and the runs nothing refers to any more, a batch at a time.

Configuration events (`created`, `changed`, `deleted`, `restored`) are the audit trail and are
never deleted. What may go, when it is older than the cut-off:

- an `error` event (`occurred_at` before it);
- a `sync_runs` row that finished before it and that no event left behind refers to
  (`flow_history.run_id`, and `flow_changes.run_id`, a copy of its event's).

Kept whatever their age: the latest run, the latest successful one (`flowsync check` and the
metrics read them) and any run still `running`, with all their events; and the first and the
last error event of each flow's current failure streak, with their runs. The analyst layer
needs nothing else: `flow_versions` refers to configuration events only (`opened_by`,
`closed_by`), and so do `flow_changes.history_id` and `flow_version_nodes`.

`flows` is left as it is. A failing flow's `failing_since`, `last_error_kind` and
`last_error_code` are still what its streak's kept events say; `consecutive_failures` still
counts the whole streak, so it can exceed the streak's events left in `flow_history`.

Each batch is one short transaction of at most `batch_size` rows, so memory and lock time
stay flat however much there is to delete. The caller holds the run lock: no sync writes
while a prune decides what is unreferenced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from sync.errors import StoreError
from sync.store.database import reading, short_error
from sync.store.health import SUCCESSFUL
from sync.store.schema import flow_changes, flow_history, flows, sync_runs
from sync.vocabulary import Event, RunStatus

BATCH_SIZE = 5000
NEEDED = "DELETE on flow_history and sync_runs: run it as the maintenance account (docs/roles)"
# "Permission denied": PostgreSQL's SQLSTATE, and MariaDB's "command denied" for a table or a column.
_DENIED_SQLSTATE = "42501"
_DENIED_MYSQL_CODES = (1142, 1143)


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """Rows deleted (or, in a dry run, that would be) from each table."""

    flow_history: int = 0
    sync_runs: int = 0


def prune(
    engine: Engine, before: datetime, *, dry_run: bool = False, batch_size: int = BATCH_SIZE
) -> PruneCounts:
    """Delete the error events and unreferenced runs older than `before`; with `dry_run`, only count them.

    Call it holding the run lock. A database failure or refusal (an account without `DELETE`) is a
    `StoreError`; the batches committed before it stay deleted, and a later prune goes on from there.
    """
    if before.tzinfo is None:
        raise ValueError("the cut-off must be an aware datetime")
    with reading(engine) as connection:
        keep = _what_to_keep(connection)
        errors, runs = _old_errors(before, keep), _unreferenced_runs(before, keep)
        if dry_run:
            return PruneCounts(
                flow_history=_count(connection, flow_history, errors) - _count_kept(connection, errors, keep),
                sync_runs=_count(connection, sync_runs, runs),
            )
    return PruneCounts(
        flow_history=_delete_in_batches(
            engine, flow_history, errors, errors, batch_size=batch_size, spared=keep.events
        ),
        sync_runs=_delete_in_batches(
            engine, sync_runs, runs, _finished_before(before), batch_size=batch_size
        ),
    )


@dataclass(frozen=True, slots=True)
class _Keep:
    """What a prune keeps whatever its age.

    `runs`: the latest run, the latest successful one and any run still marked running, with
    their events. `events`: the first and the last error event of each flow's current failure
    streak, so that `failing_since`, `last_error_kind` and `last_error_code` stay what
    `flow_history` says; `referenced_runs`: the runs those events belong to.
    """

    runs: frozenset[int]
    events: frozenset[int]
    referenced_runs: frozenset[int]


def _what_to_keep(connection: Connection) -> _Keep:
    latest = connection.scalar(sa.select(sa.func.max(sync_runs.c.id)))
    success = connection.scalar(
        sa.select(sa.func.max(sync_runs.c.id)).where(sync_runs.c.status.in_(SUCCESSFUL))
    )
    running = connection.scalars(sa.select(sync_runs.c.id).where(sync_runs.c.status == RunStatus.RUNNING))
    # A flow's current streak: its failed fetches since its last successful one (as in the writer).
    streak = (
        sa.select(sa.func.min(flow_history.c.id).label("first"), sa.func.max(flow_history.c.id).label("last"))
        .join(flows, flows.c.flow_id == flow_history.c.flow_id)
        .where(
            flow_history.c.event == Event.ERROR,
            flows.c.last_fetched_at.is_not(None),
            flow_history.c.occurred_at > flows.c.last_fetched_at,
        )
        .group_by(flow_history.c.flow_id)
        .subquery()
    )
    events = frozenset(
        int(i) for row in connection.execute(sa.select(streak.c.first, streak.c.last)) for i in row
    )
    referenced: set[int] = set()
    for chunk in _chunks(sorted(events)):
        referenced.update(
            int(run)
            for run in connection.scalars(
                sa.select(flow_history.c.run_id).where(flow_history.c.id.in_(chunk)).distinct()
            )
            if run is not None
        )
    return _Keep(
        runs=frozenset(int(i) for i in (latest, success, *running) if i is not None),
        events=events,
        referenced_runs=frozenset(referenced),
    )


def _old_errors(before: datetime, keep: _Keep) -> sa.ColumnElement[bool]:
    """Error events older than `before`, outside the kept runs (the kept streak events aside)."""
    condition = sa.and_(flow_history.c.event == Event.ERROR, flow_history.c.occurred_at < before)
    if keep.runs:
        condition = sa.and_(
            condition,
            sa.or_(flow_history.c.run_id.is_(None), flow_history.c.run_id.not_in(sorted(keep.runs))),
        )
    return condition


def _unreferenced_runs(before: datetime, keep: _Keep) -> sa.ColumnElement[bool]:
    """Runs that finished before `before` and that no event left after the prune refers to.

    Stated over the events that stay (not over those that exist now), a dry run counts exactly
    what a prune deletes, and a prune interrupted between its two steps is completed by the next.
    `flow_changes.run_id` is a copy of its configuration event's, checked all the same.
    """
    staying = sa.or_(flow_history.c.event != Event.ERROR, flow_history.c.occurred_at >= before)
    condition = sa.and_(
        _finished_before(before),
        ~sa.exists().where(flow_history.c.run_id == sync_runs.c.id, staying),
        ~sa.exists().where(flow_changes.c.run_id == sync_runs.c.id),
    )
    kept = keep.runs | keep.referenced_runs
    if kept:
        condition = sa.and_(condition, sync_runs.c.id.not_in(sorted(kept)))
    return condition


def _finished_before(before: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        sync_runs.c.finished_at.is_not(None),
        sync_runs.c.finished_at < before,
        sync_runs.c.status != RunStatus.RUNNING,
    )


def _count_kept(connection: Connection, errors: sa.ColumnElement[bool], keep: _Keep) -> int:
    """How many of the kept streak events `errors` matches (a dry run does not count them)."""
    return sum(
        _count(connection, flow_history, sa.and_(errors, flow_history.c.id.in_(chunk)))
        for chunk in _chunks(sorted(keep.events))
    )


def _chunks(values: list[int], size: int = 1000) -> list[list[int]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _count(connection: Connection, table: sa.Table, condition: sa.ColumnElement[bool]) -> int:
    return int(connection.scalar(sa.select(sa.func.count()).select_from(table).where(condition)) or 0)


def _delete_in_batches(
    engine: Engine,
    table: sa.Table,
    condition: sa.ColumnElement[bool],
    recheck: sa.ColumnElement[bool],
    *,
    batch_size: int,
    spared: frozenset[int] = frozenset(),
) -> int:
    """Delete the rows matching `condition` (but not the keys in `spared`), a batch per transaction.

    The keys are read first and deleted by value: MariaDB refuses a `DELETE` whose subquery reads
    the table it deletes from, and runs a correlated subquery once per row. The `DELETE` repeats
    `recheck`, the cheap part of the condition, so that it never deletes a configuration event
    or a recent run whatever the keys say; the run lock keeps the rest true meanwhile, and a
    foreign key keeps a run that an event refers to.
    """
    key = table.c.id
    deleted, after = 0, None
    while True:
        try:
            with engine.begin() as connection:
                query = sa.select(key).where(condition).order_by(key).limit(batch_size)
                if after is not None:
                    query = query.where(key > after)
                found = list(connection.scalars(query))
                doomed = [k for k in found if k not in spared]
                if doomed:
                    deleted += connection.execute(table.delete().where(key.in_(doomed), recheck)).rowcount
        except DBAPIError as exc:
            hint = f"; prune needs {NEEDED}" if _denied(exc) else ""
            raise StoreError(
                f"the database refused to prune {table.name} ({short_error(exc)}){hint}"
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune {table.name}: {short_error(exc)}") from exc
        if len(found) < batch_size:
            return deleted
        after = found[-1]


def _denied(exc: DBAPIError) -> bool:
    """Whether the database refused for lack of a privilege (not a lost connection or a trigger)."""
    original = exc.orig
    if getattr(original, "sqlstate", None) == _DENIED_SQLSTATE:
        return True
    args: tuple[object, ...] = getattr(original, "args", ())
    return bool(args) and args[0] in _DENIED_MYSQL_CODES
