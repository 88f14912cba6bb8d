"""The analyst layer, derived again from `flow_history` alone, written independently of flowsync's code.

`replayed(connection)` says what `flow_versions`, `flow_version_nodes`, `flow_changes`
and the streak columns of `flows` must hold for the events stored; `stored(connection)`
reads what they do hold. The writer, the 0002 migration, the kill test and the soak are
all held to `replayed(c) == stored(c)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from sync.store.schema import flow_changes, flow_history, flow_version_nodes, flow_versions, flows

NODE_COLUMNS = ("waiting_time", "status", "channel", "channel_cut")


@dataclass
class AnalystTables:
    versions: list[dict[str, Any]]
    version_nodes: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    streaks: dict[int, tuple[datetime | None, int, str | None, str | None]]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def replayed(connection: sa.Connection) -> AnalystTables:
    """What the analyst tables must hold, from `flow_history` (and `flows.last_fetched_at`) only."""
    versions: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    latest: dict[int, int] = {}
    open_version: dict[int, dict[str, Any]] = {}
    stored_flows = {row.flow_id: _utc(row.last_fetched_at) for row in connection.execute(sa.select(flows))}
    failures: dict[int, list[Any]] = {}
    for row in connection.execute(sa.select(flow_history).order_by(flow_history.c.id)):
        flow_id, event, when = row.flow_id, row.event, _utc(row.occurred_at)
        if flow_id not in stored_flows:
            continue
        if event == "error":
            fetched = stored_flows[flow_id]
            if fetched is not None and when is not None and when > fetched:
                failures.setdefault(flow_id, []).append(row)
            continue
        if event in ("changed", "deleted") and flow_id in open_version:
            closing = open_version.pop(flow_id)
            closing.update(
                valid_to=when,
                closed_by=row.id,
                closed_by_event=event,
                seconds_current=int((when - closing["valid_from"]).total_seconds() // 1),
            )
        if event in ("created", "changed", "restored"):
            snapshot = _json(row.snapshot)
            number = latest.get(flow_id, 0) + 1
            latest[flow_id] = number
            version = {
                "flow_id": flow_id,
                "version_no": number,
                "valid_from": when,
                "valid_to": None,
                "name": snapshot["name"],
                "node_count": len(snapshot["nodes"]),
                "content_hash": row.content_hash,
                "opened_by": row.id,
                "closed_by": None,
                "opened_by_event": event,
                "closed_by_event": None,
                "seconds_current": None,
            }
            versions.append(version)
            open_version[flow_id] = version
            for node in snapshot["nodes"]:
                nodes.append({"flow_id": flow_id, "version_no": number, **node})
        if event in ("changed", "restored"):
            changes.extend(_change_rows(row, when))
    streaks: dict[int, tuple[datetime | None, int, str | None, str | None]] = dict.fromkeys(
        stored_flows, (None, 0, None, None)
    )
    for flow_id, rows in failures.items():
        streaks[flow_id] = (_utc(rows[0].occurred_at), len(rows), rows[-1].error_kind, rows[-1].error_code)
    return AnalystTables(
        sorted(versions, key=lambda v: (v["flow_id"], v["version_no"])),
        sorted(nodes, key=lambda n: (n["flow_id"], n["version_no"], n["position"])),
        sorted(changes, key=lambda c: (c["history_id"], c["change_no"])),
        streaks,
    )


def _change_rows(row: sa.Row[Any], when: datetime | None) -> list[dict[str, Any]]:
    expanded: list[tuple[str, int | None, str, str, Any, Any]] = []
    for change in _json(row.changes) or []:
        field = change["field"]
        if field == "name":
            expanded.append(("name", None, "name", "modified", change["old"], change["new"]))
            continue
        position = int(field[len("nodes[") : field.index("]")])
        if "." in field:
            attribute = field.split(".", 1)[1]
            expanded.append((field, position, attribute, "modified", change["old"], change["new"]))
            continue
        kind = "added" if change["old"] is None else "removed"
        old, new = change["old"] or {}, change["new"] or {}
        for column in NODE_COLUMNS:
            expanded.append((f"{field}.{column}", position, column, kind, old.get(column), new.get(column)))
    return [
        {
            "history_id": row.id,
            "run_id": row.run_id,
            "flow_id": row.flow_id,
            "occurred_at": when,
            "occurred_on": when.date() if when else None,
            "event": row.event,
            "change_no": number,
            "field": name,
            "position": position,
            "attribute": attribute,
            "change_kind": kind,
            "old_value": _text(old),
            "new_value": _text(new),
        }
        for number, (name, position, attribute, kind, old, new) in enumerate(expanded, start=1)
    ]


def stored(connection: sa.Connection) -> AnalystTables:
    """What the analyst tables hold, in the same shape (`flow_changes.id` aside)."""

    def rows(table: sa.Table, *order: str, without: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        query = sa.select(*(c for c in table.c if c.name not in without)).order_by(*order)
        found = [dict(row._mapping) for row in connection.execute(query)]
        for row in found:
            for key, value in row.items():
                if isinstance(value, datetime):
                    row[key] = _utc(value)
        return found

    return AnalystTables(
        rows(flow_versions, "flow_id", "version_no"),
        rows(flow_version_nodes, "flow_id", "version_no", "position"),
        rows(flow_changes, "history_id", "change_no", without=("id",)),
        {
            row.flow_id: (
                _utc(row.failing_since),
                row.consecutive_failures,
                row.last_error_kind,
                row.last_error_code,
            )
            for row in connection.execute(sa.select(flows))
        },
    )


def assert_analyst_layer_replays(engine: sa.Engine) -> None:
    """The analyst tables hold exactly what replaying `flow_history` gives."""
    with engine.connect() as connection:
        expected, actual = replayed(connection), stored(connection)
    assert actual.versions == expected.versions
    assert actual.version_nodes == expected.version_nodes
    assert actual.changes == expected.changes
    assert actual.streaks == expected.streaks
