"""`--format json` and `--format csv`: the reports as plain records for other programs.

The records keep the tables' column names and their values exactly as stored; the
encoding alone makes them safe (JSON escapes every non-ASCII and control character,
CSV quotes every text cell), so nothing is ever read as markup or acts on a terminal
through JSON. Timestamps are ISO 8601 in UTC (`2026-11-24T12:00:00.123456+00:00`).
A value that does not decode (see `sync.store.reports`) is null, and its record's
`corrupt` member (CSV: column) says which column is damaged and how.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sync.core.labels import channel_cut_label, status_label
from sync.store.reports import NODE_COLUMNS, Corrupt, FlowConfig, FlowFailure, HistoryEntry, StatusReport

RUN_COLUMNS = (
    "id",
    "started_at",
    "finished_at",
    "triggered_by",
    "status",
    "flows_requested",
    "flows_created",
    "flows_changed",
    "flows_unchanged",
    "flows_deleted",
    "flows_failed",
    "error_message",
    "alert_status",
    "alert_error",
)
FLOW_COLUMNS = (
    "flow_id",
    "name",
    "node_count",
    "content_hash",
    "first_seen_at",
    "last_changed_at",
    "last_fetched_at",
    "deleted_at",
    "sync_state",
    "last_error",
    "failing_since",
    "consecutive_failures",
    "last_error_kind",
    "last_error_code",
)
HISTORY_COLUMNS = (
    "id",
    "run_id",
    "flow_id",
    "occurred_at",
    "event",
    "changes",
    "snapshot",
    "error_kind",
    "error_code",
    "error_message",
)
NEVER_FETCHED = "never_fetched"
"""The `sync_state` a status record gives a requested flow that has no `flows` row (output only)."""
NODE_RECORD = (
    "position",
    "waiting_time",
    "status",
    "status_label",
    "channel",
    "channel_cut",
    "channel_cut_label",
)
CONFIG_CSV = ("flow_id", "name", "version_no", "valid_from", "valid_to", "deleted_at", *NODE_RECORD)


def status_record(report: StatusReport) -> dict[str, Any]:
    """`{"runs": [...], "flows": [...], "never_fetched": [...], "flows_total", "states"}`."""
    runs = []
    for run in report.runs:
        record = _record(run, RUN_COLUMNS)
        failures = report.run_failures.get(run["id"])
        if failures is not None:
            record["failed_flows"] = [_failure(failure) for failure in failures]
        runs.append(record)
    return {
        "runs": runs,
        "flows": [_record(flow, FLOW_COLUMNS) for flow in report.flows],
        "flows_total": report.flows_total,
        "states": report.states,
        "requested": str(report.requested) if report.requested is not None else None,
        "never_fetched": [
            {
                "flow_id": missing.flow_id,
                "attempts": missing.attempts,
                "last_attempt_at": _plain(missing.last_attempt_at),
                "last_error_kind": missing.last_error.error_kind if missing.last_error else None,
                "last_error_code": missing.last_error.error_code if missing.last_error else None,
                "last_error": missing.last_error.error_message if missing.last_error else None,
            }
            for missing in report.never_fetched
        ],
        "never_fetched_total": report.never_fetched_total,
    }


def status_rows(report: StatusReport) -> tuple[Sequence[str], list[list[Any]]]:
    """One row per flow with the `flows` columns; a requested flow never fetched has state `never_fetched`."""
    header = (*FLOW_COLUMNS, "corrupt")
    rows = [_csv_row(_record(flow, FLOW_COLUMNS), header) for flow in report.flows]
    for missing in report.never_fetched:
        error = missing.last_error
        row = dict.fromkeys(header)
        row.update(
            flow_id=missing.flow_id,
            sync_state=NEVER_FETCHED,
            consecutive_failures=missing.attempts,
            last_error=error.error_message if error else None,
            last_error_kind=error.error_kind if error else None,
            last_error_code=error.error_code if error else None,
        )
        rows.append(_csv_row(row, header))
    return header, rows


def history_records(entries: Iterable[HistoryEntry]) -> list[dict[str, Any]]:
    """One record per `flow_history` row, `changes` and `snapshot` as JSON values."""
    records = []
    for entry in entries:
        record = {column: _plain(getattr(entry, column)) for column in HISTORY_COLUMNS}
        record["corrupt"] = _corrupt_columns(
            {"occurred_at": entry.occurred_at, "snapshot": entry.snapshot, "changes": entry.changes}
        )
        records.append(record)
    return records


def history_rows(entries: Iterable[HistoryEntry]) -> tuple[Sequence[str], list[list[Any]]]:
    """One row per `flow_history` row; `changes` and `snapshot` as JSON text in their cells."""
    header = (*HISTORY_COLUMNS, "corrupt")
    rows = []
    for record in history_records(entries):
        for column in ("changes", "snapshot"):
            if record[column] is not None:
                record[column] = json.dumps(record[column], ensure_ascii=False)
        rows.append(_csv_row(record, header))
    return header, rows


def config_record(config: FlowConfig) -> dict[str, Any]:
    """The `snapshot` shape (`flow_id`, `name`, `nodes`) with labels, its version, and whether deleted."""
    return {
        "flow_id": config.flow_id,
        "name": config.name,
        "nodes": [_node(node) for node in config.nodes],
        "version_no": config.version_no,
        "valid_from": _plain(config.valid_from),
        "valid_to": _plain(config.valid_to),
        "deleted": config.deleted_at is not None,
        "deleted_at": _plain(config.deleted_at),
        "as_of": _plain(config.as_of),
        "sync_state": config.sync_state,
        "last_error": config.last_error,
    }


def config_rows(config: FlowConfig) -> tuple[Sequence[str], list[list[Any]]]:
    """One row per node, each with the flow, its version and the node's columns and labels."""
    record = config_record(config)
    rows = [_csv_row({**record, **node}, CONFIG_CSV) for node in record["nodes"]]
    return CONFIG_CSV, rows


def as_json(document: object) -> str:
    """Indented, key order kept, every non-ASCII character escaped: exact once parsed, inert on a terminal."""
    return json.dumps(document, indent=2, ensure_ascii=True)


def as_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header row, then the rows; every text cell quoted, numbers bare, nulls empty; lines end in LF."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _node(node: Mapping[str, Any]) -> dict[str, Any]:
    record = {column: node.get(column) for column in NODE_COLUMNS}
    record["status_label"] = status_label(record["status"])
    record["channel_cut_label"] = channel_cut_label(record["channel_cut"])
    return {column: record[column] for column in NODE_RECORD}


def _failure(failure: FlowFailure) -> dict[str, Any]:
    return {
        "flow_id": failure.flow_id,
        "error_kind": failure.error_kind,
        "error_code": failure.error_code,
        "error_message": failure.error_message,
    }


def _record(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    record = {column: _plain(row.get(column)) for column in columns}
    record["corrupt"] = _corrupt_columns(row)
    return record


def _corrupt_columns(values: Mapping[str, Any]) -> dict[str, str]:
    return {column: value.problem for column, value in values.items() if isinstance(value, Corrupt)}


def _plain(value: object) -> Any:
    if isinstance(value, Corrupt):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _csv_row(record: Mapping[str, Any], header: Sequence[str]) -> list[Any]:
    row = []
    for column in header:
        value = record.get(column)
        if column == "corrupt" and isinstance(value, dict):
            value = "; ".join(f"{name} {problem}" for name, problem in value.items()) or None
        # Integers stay bare; text (codes such as "-22" included) is quoted, so it stays text.
        row.append("" if value is None else value if isinstance(value, int) else str(value))
    return row
