"""The readable text of what `status`, `history` and `show` say: each event, change, flow and corrupt row.

Pure functions on the reports' plain data, so the wording of a change
(`flow 12 "Login OTP": nodes[2].waiting_time 30 -> 60`) is tested without a database.
The text is raw: names and reasons appear as the vendor sent them, and whoever prints
it escapes what a terminal would act on (`sync.core.safe_text`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sync.cli.streaks import Grouped
from sync.core.labels import channel_cut_label, status_label
from sync.core.snapshot import NODE_FIELDS
from sync.store.reports import Corrupt, FlowConfig, FlowFailure, HistoryEntry, NoConfig, StatusReport
from sync.vocabulary import Event, SyncState

LABELLED = {"status": status_label, "channel_cut": channel_cut_label}
"""Node columns whose codes have labels, and the function that gives a code's label."""


def describe_event(entry: HistoryEntry) -> list[str]:
    """The readable lines of one `flow_history` row: `flow ID "name": what happened`, one line per change."""
    problems = entry.problems()
    if problems:
        subject = "account" if entry.flow_id is None else f"flow {entry.flow_id}"
        return [f"{subject}: event {entry.id} is corrupt ({'; '.join(problems)})"]
    subject = _subject(entry)
    snapshot = entry.snapshot if isinstance(entry.snapshot, dict) else {}
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


def describe_row(row: Grouped) -> list[str]:
    """An event's lines; a streak of identical errors in one: `flow 9: api error -22, 41 times since ...`."""
    if row.count < 2:
        return describe_event(row.newest)
    entry = row.newest
    since = f" since {moment(row.since)[:16]}" if row.since is not None else ""
    streak = f"{error_text(entry.error_kind, entry.error_code)}, {row.count} times{since}"
    return [f"{_subject(entry)}: {streak}: {entry.error_message or ''}"]


def _subject(entry: HistoryEntry) -> str:
    """`flow 12 "Login OTP"` (its name then, else now), `flow 9` when it never had one, or `account`."""
    subject = "account" if entry.flow_id is None else f"flow {entry.flow_id}"
    snapshot = entry.snapshot if isinstance(entry.snapshot, dict) else {}
    name = snapshot.get("name") or entry.current_name
    return subject if name is None else f"{subject} {_quoted(name)}"


def describe_change(change: Mapping[str, Any]) -> str:
    """`field old -> new`, strings quoted; a whole node added or removed lists its columns."""
    field, old, new = change["field"], change.get("old"), change.get("new")
    if field.startswith("nodes[") and field.endswith("]"):
        if old is None and isinstance(new, dict):
            return f"{field} added {_node_text(new)}"
        if new is None and isinstance(old, dict):
            return f"{field} removed {_node_text(old)}"
    column = field.rpartition(".")[2] if field.startswith("nodes[") else field
    return f"{field} {with_label(column, old)} -> {with_label(column, new)}"


def history_notes(entries: Iterable[HistoryEntry]) -> list[str]:
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
    return "(" + ", ".join(f"{key} {with_label(key, node[key])}" for key in keys) + ")"


def _value(value: Any) -> str:
    return _quoted(value) if isinstance(value, str) else str(value)


def _quoted(text: object) -> str:
    """In double quotes, with quotes and backslashes escaped, so a name's ends are never in doubt."""
    # str(): SQLite keeps whatever type was written, so a name read back may be a number.
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def with_label(column: str, code: object, *, quote: bool = True) -> str:
    """A node value as shown: a code with its label (`2 (not verified)`); text quoted if `quote`."""
    label_of = LABELLED.get(column)
    label = label_of(code) if label_of is not None else None
    text = _value(code) if quote else str(code)
    return f"{text} ({label})" if label is not None else text


def moment(value: datetime | Corrupt | None) -> str:
    """A stored UTC timestamp to the second, as every table shows it."""
    if isinstance(value, Corrupt):
        return "corrupt"
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def describe_config(config: FlowConfig) -> str:
    """What the configuration shown is: which version, since when, and whether the flow was deleted."""
    subject = f"flow {config.flow_id} {_quoted(config.name)}"
    if config.as_of is not None:
        subject += f" as of {moment(config.as_of)} UTC"
    version = f"version {config.version_no}" if config.version_no is not None else "no version recorded"
    if config.deleted_at is not None:
        return (
            f"{subject}: deleted (at {moment(config.deleted_at)}); its last configuration, "
            f"{version}, was current from {moment(config.valid_from)}"
        )
    if config.as_of is not None:
        until = f"until {moment(config.valid_to)}" if config.valid_to is not None else "still current"
        return f"{subject}: {version}, current from {moment(config.valid_from)}, {until}"
    text = f"{subject}: {version}, current since {moment(config.valid_from)}"
    if config.sync_state == SyncState.ERROR:
        text += f"; the latest fetch failed ({config.last_error or 'no reason stored'})"
    return text


def describe_missing(missing: NoConfig) -> str:
    """Why there is nothing to show: an unknown flow, or an instant before the flow was first seen."""
    if missing.as_of is None or missing.first_seen is None:
        return f"no flow {missing.flow_id} in this database (it was never fetched successfully)"
    return (
        f"flow {missing.flow_id} did not exist yet at {moment(missing.as_of)} UTC "
        f"(first seen at {moment(missing.first_seen)})"
    )


def error_text(kind: object, code: object, message: object = None) -> str:
    """`api error -22: reason`; without a message, `api error -22`."""
    text = f"{kind or 'unknown'} error{f' {code}' if code else ''}"
    return f"{text}: {message}" if message else text


def flow_error(flow: Mapping[str, Any]) -> str:
    """A failing flow's `last error` cell, with its streak: `api error -22: why (41 failed fetches in a row
    since 2026-11-20 10:05)`. The streak counts every failed fetch since the last success."""
    if not flow.get("last_error"):
        return ""
    text = error_text(flow.get("last_error_kind"), flow.get("last_error_code"), flow["last_error"])
    if flow.get("last_error_kind") is None:
        return str(flow["last_error"])  # a row from before the streak columns: only the text is known
    failures = flow.get("consecutive_failures")
    if isinstance(failures, int) and failures >= 2:
        since = flow.get("failing_since")
        when = f" since {moment(since)[:16]}" if since is not None else ""
        text += f" ({failures} failed fetches in a row{when})"
    return text


def partial_run(failures: list[FlowFailure], failed: object) -> str:
    """Why a `partial` run is partial, in short: `3 flows failed: 2 (http 503), 9 (api -22), 1 more`."""
    total = failed if isinstance(failed, int) and failed >= len(failures) else len(failures)
    named = ", ".join(
        f"{failure.flow_id} ({_short_error(failure.error_kind, failure.error_code)})" for failure in failures
    )
    text = f"{_count(total, 'flow')} failed"
    if named:
        text += f": {named}"
    if total > len(failures):
        text += f", {total - len(failures)} more"
    return text


def _short_error(kind: object, code: object) -> str:
    return f"{kind or 'unknown'}{f' {code}' if code else ''}"
