"""Pruning: deleting old `error` events, and the runs nothing refers to any more, a batch at a time.

Configuration events (`created`, `changed`, `deleted`, `restored`) are the audit trail and are
never deleted. What may go, when it is older than the cut-off:

- an `error` event (`occurred_at` before it);
- a `sync_runs` row that finished before it and that no event left behind refers to
  (`flow_history.run_id`, and `flow_changes.run_id`, a copy of its event's).

Three runs are kept whatever their age, with all their events: the latest run, the latest
successful one (`flowsync check` and the metrics read them) and any run still `running`.
The analyst layer needs nothing else: `flow_versions` refers to configuration events only
(`opened_by`, `closed_by`), and so do `flow_changes.history_id` and `flow_version_nodes`.

`flows` is left as it is: `failing_since` and `consecutive_failures` still describe the whole
current streak of a failing flow, including failed fetches whose error events were pruned.

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
from sync.store.schema import flow_changes, flow_history, sync_runs
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
        kept = _kept_runs(connection)
        if dry_run:
            return PruneCounts(
                flow_history=_count(connection, flow_history, _old_errors(before, kept)),
                sync_runs=_count(connection, sync_runs, _unreferenced_runs(before, kept)),
            )
    errors = _delete_in_batches(
        engine, flow_history, _old_errors(before, kept), flow_history.c.id, batch_size
    )
    runs = _delete_in_batches(engine, sync_runs, _unreferenced_runs(before, kept), sync_runs.c.id, batch_size)
    return PruneCounts(flow_history=errors, sync_runs=runs)


def _kept_runs(connection: Connection) -> list[int]:
    """The latest run, the latest successful one and every run still marked running."""
    latest = connection.scalar(sa.select(sa.func.max(sync_runs.c.id)))
    success = connection.scalar(
        sa.select(sa.func.max(sync_runs.c.id)).where(sync_runs.c.status.in_(SUCCESSFUL))
    )
    running = connection.scalars(sa.select(sync_runs.c.id).where(sync_runs.c.status == RunStatus.RUNNING))
    return sorted({int(i) for i in (latest, success, *running) if i is not None})


def _old_errors(before: datetime, kept: list[int]) -> sa.ColumnElement[bool]:
    condition = sa.and_(flow_history.c.event == Event.ERROR, flow_history.c.occurred_at < before)
    if kept:
        condition = sa.and_(
            condition, sa.or_(flow_history.c.run_id.is_(None), flow_history.c.run_id.not_in(kept))
        )
    return condition


def _unreferenced_runs(before: datetime, kept: list[int]) -> sa.ColumnElement[bool]:
    """Runs that finished before `before` and that no event left after the prune refers to.

    Stated over the events that stay (not over those that exist now), a dry run counts exactly
    what a prune deletes, and a prune interrupted between its two steps is completed by the next.
    """
    staying = sa.or_(flow_history.c.event != Event.ERROR, flow_history.c.occurred_at >= before)
    if kept:
        staying = sa.or_(staying, flow_history.c.run_id.in_(kept))
    condition = sa.and_(
        sync_runs.c.finished_at.is_not(None),
        sync_runs.c.finished_at < before,
        sync_runs.c.status != RunStatus.RUNNING,
        ~sa.exists().where(flow_history.c.run_id == sync_runs.c.id, staying),
        ~sa.exists().where(flow_changes.c.run_id == sync_runs.c.id),
    )
    if kept:
        condition = sa.and_(condition, sync_runs.c.id.not_in(kept))
    return condition


def _count(connection: Connection, table: sa.Table, condition: sa.ColumnElement[bool]) -> int:
    return int(connection.scalar(sa.select(sa.func.count()).select_from(table).where(condition)) or 0)


def _delete_in_batches(
    engine: Engine, table: sa.Table, condition: sa.ColumnElement[bool], key: sa.Column[int], batch_size: int
) -> int:
    """Delete the rows matching `condition`, `batch_size` keys per transaction, in key order.

    The keys are read first and deleted by value: MariaDB refuses a `DELETE` whose subquery reads
    the table it deletes from. The condition is repeated in the `DELETE`, so a row is deleted only
    if it still qualifies when its batch commits.
    """
    deleted, after = 0, None
    while True:
        try:
            with engine.begin() as connection:
                query = sa.select(key).where(condition).order_by(key).limit(batch_size)
                if after is not None:
                    query = query.where(key > after)
                keys = list(connection.scalars(query))
                if not keys:
                    return deleted
                result = connection.execute(table.delete().where(key.in_(keys), condition))
        except DBAPIError as exc:
            hint = f"; prune needs {NEEDED}" if _denied(exc) else ""
            raise StoreError(
                f"the database refused to prune {table.name} ({short_error(exc)}){hint}"
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune {table.name}: {short_error(exc)}") from exc
        deleted += result.rowcount
        after = keys[-1]
        if len(keys) < batch_size:
            return deleted


def _denied(exc: DBAPIError) -> bool:
    """Whether the database refused for lack of a privilege (not a lost connection or a trigger)."""
    original = exc.orig
    if getattr(original, "sqlstate", None) == _DENIED_SQLSTATE:
        return True
    args: tuple[object, ...] = getattr(original, "args", ())
    return bool(args) and args[0] in _DENIED_MYSQL_CODES
