"""What a run did, for a change alert: its row, the previous run's status and its configuration events;
and, once the alert has been tried, how its delivery ended.

The events are read a bounded number at a time: a first load of a large account has one
`created` event per flow, and an alert shows only the first few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from sync.core.versions import CLOSING, OPENING
from sync.errors import StoreError
from sync.store.database import reading, safe_url, short_error
from sync.store.health import RunFacts, read_run
from sync.store.schema import flow_changes, flow_history, flows, sync_runs
from sync.vocabulary import AlertStatus, Event, RunStatus

CONFIGURATION_EVENTS = tuple(dict.fromkeys((*OPENING, *CLOSING)))


@dataclass(frozen=True, slots=True)
class ChangeLine:
    """One configuration event of the run, and the values it changed (none for created or deleted)."""

    flow_id: int
    name: str | None
    event: Event
    values: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RunSummary:
    run: RunFacts
    previous_status: RunStatus | None
    events: int  # configuration events the run wrote
    lines: list[ChangeLine]  # the first of them


def summarize(engine: Engine, run_id: int, *, max_lines: int) -> RunSummary | None:
    """The run's summary, with at most `max_lines` events spelled out; None if the run is unknown."""
    with reading(engine) as connection:
        run = read_run(connection, run_id)
        if run is None:
            return None
        previous_status = connection.scalar(
            sa.select(sync_runs.c.status)
            .where(sync_runs.c.id < run_id)
            .order_by(sync_runs.c.id.desc())
            .limit(1)
        )
        in_run = sa.and_(flow_history.c.run_id == run_id, flow_history.c.event.in_(CONFIGURATION_EVENTS))
        total = connection.scalar(sa.select(sa.func.count()).select_from(flow_history).where(in_run)) or 0
        events = connection.execute(
            sa.select(flow_history.c.id, flow_history.c.flow_id, flow_history.c.event, flows.c.name)
            .select_from(flow_history.outerjoin(flows, flows.c.flow_id == flow_history.c.flow_id))
            .where(in_run)
            .order_by(flow_history.c.id)
            .limit(max_lines)
        ).all()
        values: dict[int, list[dict[str, Any]]] = {}
        if events:
            for change in connection.execute(
                sa.select(flow_changes)
                .where(flow_changes.c.history_id.in_([e.id for e in events]))
                .order_by(flow_changes.c.history_id, flow_changes.c.change_no)
            ):
                values.setdefault(change.history_id, []).append(
                    {"field": change.field, "old": change.old_value, "new": change.new_value}
                )
    return RunSummary(
        run=run,
        previous_status=RunStatus(previous_status) if previous_status is not None else None,
        events=int(total),
        lines=[ChangeLine(e.flow_id, e.name, Event(e.event), values.get(e.id, [])) for e in events],
    )


ALERT_ERROR_CHARS = 200  # sync_runs.alert_error


def record_alert(engine: Engine, run_id: int, status: AlertStatus, error: str | None = None) -> None:
    """How the run's change alert ended, on the run's own row (after the run has finished).

    Database failures become `StoreError`, for the caller to log.
    """
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.update(sync_runs)
                .where(sync_runs.c.id == run_id)
                .values(alert_status=status, alert_error=None if error is None else error[:ALERT_ERROR_CHARS])
            )
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot record the alert's outcome in {safe_url(engine.url)}: {short_error(exc)}"
        ) from exc
