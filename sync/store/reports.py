"""What `status` and `history` show: queries, and the readable text of each event.

`describe_event` is pure, so the wording of a change
(`flow 12 "Login OTP": nodes[2].waiting_time 30 -> 60`) is tested on plain data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.core.snapshot import NODE_FIELDS
from sync.store.database import reading
from sync.store.schema import flow_history, flows, sync_runs
from sync.vocabulary import Event, SyncState


@dataclass(frozen=True, slots=True)
class StatusReport:
    runs: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    flows_total: int
    states: dict[str, int]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: int
    occurred_at: datetime
    run_id: int | None
    flow_id: int | None
    event: str
    lines: list[str]


def status(engine: Engine, *, runs: int = 10, flow_limit: int | None = 100) -> StatusReport:
    """The latest runs, and flows with problems first, then by ID."""
    with reading(engine) as connection:
        run_rows = connection.execute(sa.select(sync_runs).order_by(sync_runs.c.id.desc()).limit(runs))
        states: dict[str, int] = dict(
            connection.execute(
                sa.select(flows.c.sync_state, sa.func.count()).group_by(flows.c.sync_state)
            ).all()
        )
        problems_first = sa.case((flows.c.sync_state == SyncState.OK, 1), else_=0)
        query = sa.select(flows).order_by(problems_first, flows.c.flow_id)
        if flow_limit is not None:
            query = query.limit(flow_limit)
        return StatusReport(
            runs=[dict(row._mapping) for row in run_rows],
            flows=[dict(row._mapping) for row in connection.execute(query)],
            flows_total=sum(states.values()),
            states={str(k): int(v) for k, v in states.items()},
        )


def history(
    engine: Engine, *, flow_id: int | None = None, run_id: int | None = None, limit: int | None = 50
) -> list[HistoryEntry]:
    """Events newest first, each with its readable lines."""
    query = (
        sa.select(flow_history, flows.c.name.label("current_name"))
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
                occurred_at=row.occurred_at,
                run_id=row.run_id,
                flow_id=row.flow_id,
                event=row.event,
                lines=describe_event(dict(row._mapping)),
            )
            for row in connection.execute(query)
        ]


def describe_event(row: dict[str, Any]) -> list[str]:
    """The readable lines of one `flow_history` row."""
    snapshot = row.get("snapshot") or {}
    name = snapshot.get("name") or row.get("current_name")
    subject = "account" if row.get("flow_id") is None else f"flow {row['flow_id']}"
    if name is not None:
        subject += f" {json.dumps(name, ensure_ascii=False)}"
    event = row["event"]
    if event == Event.ERROR:
        code = f" {row['error_code']}" if row.get("error_code") else ""
        return [
            f"{subject}: {row.get('error_kind') or 'unknown'} error{code}: {row.get('error_message') or ''}"
        ]
    if event == Event.CREATED:
        return [f"{subject}: created with {_count(len(snapshot.get('nodes', [])), 'node')}"]
    if event == Event.DELETED:
        return [f"{subject}: deleted"]
    changes: Sequence[dict[str, Any]] = row.get("changes") or []
    lines = [f"{subject}: {describe_change(change)}" for change in changes]
    if event == Event.RESTORED:
        return [f"{subject}: restored", *lines]
    return lines or [f"{subject}: {event}"]


def describe_change(change: dict[str, Any]) -> str:
    field, old, new = change["field"], change.get("old"), change.get("new")
    if field.startswith("nodes[") and field.endswith("]"):
        if old is None and isinstance(new, dict):
            return f"{field} added {_node_text(new)}"
        if new is None and isinstance(old, dict):
            return f"{field} removed {_node_text(old)}"
    return f"{field} {_value(old)} -> {_value(new)}"


def _node_text(node: dict[str, Any]) -> str:
    # Column order, whatever order the database's JSON type kept the keys in (MySQL sorts them).
    keys = [k for k in NODE_FIELDS if k in node] + sorted(k for k in node if k not in NODE_FIELDS)
    return "(" + ", ".join(f"{key} {_value(node[key])}" for key in keys) + ")"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
