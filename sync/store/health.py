"""What a health check and the metrics read: the latest runs and how many flows are in each state.

Each read is a few indexed look-ups and one small aggregate, cheap enough for a probe
that runs every few seconds; it opens a read-only connection (no write lock on SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync.core.outcomes import RunCounts
from sync.store.database import reading
from sync.store.schema import flow_history, flows, sync_runs
from sync.vocabulary import RunStatus, SyncState

SUCCESSFUL = (RunStatus.OK, RunStatus.PARTIAL)
ACCOUNT_CODES = ("-1", "-2")  # the API refused the account: recorded once, without a flow


@dataclass(frozen=True, slots=True)
class RunFacts:
    """One `sync_runs` row, as the metrics and the health check need it."""

    run_id: int
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    counts: RunCounts
    error_message: str | None


@dataclass(frozen=True, slots=True)
class HealthFacts:
    """The latest run, the latest successful one, and the stored flows by state."""

    latest_run: RunFacts | None
    latest_success: RunFacts | None
    flows_by_state: dict[SyncState, int]
    account_refused: bool = False  # the latest run met -1 or -2: the account itself was refused


def read_health(engine: Engine, run_id: int | None = None) -> HealthFacts:
    """The facts now; with `run_id`, that run stands as the latest (the one a process just finished)."""
    with reading(engine) as connection:
        latest = read_run(connection, run_id) if run_id is not None else _latest_run(connection)
        success = _latest_run(
            connection, sync_runs.c.status.in_(SUCCESSFUL), sync_runs.c.finished_at.is_not(None)
        )
        refused = latest is not None and bool(
            connection.scalar(
                sa.select(sa.func.count())
                .select_from(flow_history)
                .where(
                    flow_history.c.run_id == latest.run_id,
                    flow_history.c.flow_id.is_(None),
                    flow_history.c.error_code.in_(ACCOUNT_CODES),
                )
            )
        )
        states: dict[str, int] = dict(
            connection.execute(
                sa.select(flows.c.sync_state, sa.func.count()).group_by(flows.c.sync_state)
            ).all()
        )
    return HealthFacts(
        latest_run=latest,
        latest_success=success,
        flows_by_state={state: int(states.get(state, 0)) for state in SyncState},
        account_refused=refused,
    )


def read_run(connection: Connection, run_id: int) -> RunFacts | None:
    """One run's facts, or None when there is no such run."""
    return _latest_run(connection, sync_runs.c.id == run_id)


def _latest_run(connection: Connection, *conditions: sa.ColumnElement[bool]) -> RunFacts | None:
    row = connection.execute(
        sa.select(sync_runs).where(*conditions).order_by(sync_runs.c.id.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return RunFacts(
        run_id=row.id,
        status=RunStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        counts=RunCounts(
            requested=row.flows_requested,
            created=row.flows_created,
            changed=row.flows_changed,
            unchanged=row.flows_unchanged,
            deleted=row.flows_deleted,
            failed=row.flows_failed,
        ),
        error_message=row.error_message,
    )
