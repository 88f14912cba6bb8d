"""Turning reports into rich tables for the terminal (plain text when piped)."""

from __future__ import annotations

from datetime import datetime

from rich.table import Table
from rich.text import Text

from sync.store.reports import HistoryEntry, StatusReport
from sync.vocabulary import Event, RunStatus, SyncState

_STATE_STYLE: dict[str, str] = {
    SyncState.OK: "green",
    SyncState.ERROR: "red",
    SyncState.DELETED: "dim",
    RunStatus.PARTIAL: "yellow",
    RunStatus.FAILED: "red",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def runs_table(report: StatusReport) -> Table:
    table = Table(title="Latest runs (UTC)", title_justify="left")
    for column in ("run", "started", "finished", "by", "status", "req", "new", "chg", "same", "del", "fail"):
        table.add_column(
            column,
            justify="right" if column in ("run", "req", "new", "chg", "same", "del", "fail") else "left",
        )
    table.add_column("error", overflow="fold")
    for run in report.runs:
        table.add_row(
            str(run["id"]),
            _when(run["started_at"]),
            _when(run["finished_at"]),
            run["triggered_by"],
            Text(run["status"], style=_STATE_STYLE.get(run["status"], "")),
            *(
                str(run[f"flows_{n}"])
                for n in ("requested", "created", "changed", "unchanged", "deleted", "failed")
            ),
            run["error_message"] or "",
        )
    return table


def flows_table(report: StatusReport) -> Table:
    summary = ", ".join(f"{count} {state}" for state, count in sorted(report.states.items())) or "none yet"
    table = Table(title=f"Flows ({report.flows_total}: {summary})", title_justify="left")
    for column in ("flow", "name", "nodes", "state", "last changed", "last fetched", "last error"):
        table.add_column(column, justify="right" if column in ("flow", "nodes") else "left")
    for flow in report.flows:
        table.add_row(
            str(flow["flow_id"]),
            flow["name"],
            str(flow["node_count"]),
            Text(flow["sync_state"], style=_STATE_STYLE.get(flow["sync_state"], "")),
            _when(flow["last_changed_at"]),
            _when(flow["last_fetched_at"]),
            flow["last_error"] or "",
        )
    if len(report.flows) < report.flows_total:
        table.caption = f"{report.flows_total - len(report.flows)} more flows not shown (use --all)"
    return table


def history_table(entries: list[HistoryEntry]) -> Table:
    table = Table(title="History, newest first (UTC)", title_justify="left")
    table.add_column("when")
    table.add_column("run", justify="right")
    table.add_column("event")
    table.add_column("what", overflow="fold")
    for entry in entries:
        table.add_row(
            _when(entry.occurred_at),
            str(entry.run_id) if entry.run_id is not None else "-",
            Text(entry.event, style=_EVENT_STYLE.get(entry.event, "")),
            "\n".join(entry.lines),
        )
    return table


_EVENT_STYLE: dict[str, str] = {
    Event.CREATED: "green",
    Event.CHANGED: "yellow",
    Event.DELETED: "red",
    Event.RESTORED: "cyan",
    Event.ERROR: "bold red",
}
