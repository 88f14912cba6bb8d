"""The readable text of what `status` and `history` show: each event, each change, each corrupt row.

Pure functions on the reports' plain data, so the wording of a change
(`flow 12 "Login OTP": nodes[2].waiting_time 30 -> 60`) is tested without a database.
The text is raw: names and reasons appear as the vendor sent them, and whoever prints
it escapes what a terminal would act on (`sync.core.safe_text`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.core.snapshot import NODE_FIELDS
from sync.store.reports import Corrupt, HistoryEntry, StatusReport
from sync.vocabulary import Event


def describe_event(entry: HistoryEntry) -> list[str]:
    """The readable lines of one `flow_history` row: `flow ID "name": what happened`, one line per change."""
    subject = "account" if entry.flow_id is None else f"flow {entry.flow_id}"
    problems = entry.problems()
    if problems:
        return [f"{subject}: event {entry.id} is corrupt ({'; '.join(problems)})"]
    snapshot = entry.snapshot if isinstance(entry.snapshot, dict) else {}
    name = snapshot.get("name") or entry.current_name
    if name is not None:
        subject += f" {_quoted(name)}"
    event = entry.event
    if event == Event.ERROR:
        code = f" {entry.error_code}" if entry.error_code else ""
        return [f"{subject}: {entry.error_kind or 'unknown'} error{code}: {entry.error_message or ''}"]
    if event == Event.CREATED:
        return [f"{subject}: created with {_count(len(snapshot.get('nodes', [])), 'node')}"]
    if event == Event.DELETED:
        return [f"{subject}: deleted"]
    changes = entry.changes if isinstance(entry.changes, list) else []
    lines = [f"{subject}: {describe_change(change)}" for change in changes]
    if event == Event.RESTORED:
        return [f"{subject}: restored", *lines]
    return lines or [f"{subject}: {event}"]


def describe_change(change: Mapping[str, Any]) -> str:
    """`field old -> new`, strings quoted; a whole node added or removed lists its columns."""
    field, old, new = change["field"], change.get("old"), change.get("new")
    if field.startswith("nodes[") and field.endswith("]"):
        if old is None and isinstance(new, dict):
            return f"{field} added {_node_text(new)}"
        if new is None and isinstance(old, dict):
            return f"{field} removed {_node_text(old)}"
    return f"{field} {_value(old)} -> {_value(new)}"


def history_notes(entries: list[HistoryEntry]) -> list[str]:
    """One line per corrupt event, by key: `flow 12: event 345 is corrupt (snapshot is not valid JSON)`."""
    return [describe_event(entry)[0] for entry in entries if entry.problems()]


def status_notes(report: StatusReport) -> list[str]:
    """One line per run or flow with a corrupt value, by key: `flow 12 is corrupt (first_seen_at ...)`."""
    keyed = [(f"run {run['id']}", run) for run in report.runs]
    keyed += [(f"flow {flow['flow_id']}", flow) for flow in report.flows]
    notes = []
    for key, row in keyed:
        problems = [
            f"{column} {value.problem}" for column, value in row.items() if isinstance(value, Corrupt)
        ]
        if problems:
            notes.append(f"{key} is corrupt ({'; '.join(problems)})")
    return notes


def _node_text(node: dict[str, Any]) -> str:
    # Column order, whatever order the database's JSON type kept the keys in (MySQL sorts them).
    keys = [k for k in NODE_FIELDS if k in node] + sorted(k for k in node if k not in NODE_FIELDS)
    return "(" + ", ".join(f"{key} {_value(node[key])}" for key in keys) + ")"


def _value(value: Any) -> str:
    return _quoted(value) if isinstance(value, str) else str(value)


def _quoted(text: object) -> str:
    """In double quotes, with quotes and backslashes escaped, so a name's ends are never in doubt."""
    # str(): SQLite keeps whatever type was written, so a name read back may be a number.
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
