"""Turning reports into rich tables for the terminal (plain text when piped).

Every value from the database or the vendor enters a table as a `Text` cell, so rich never
reads it as markup (`[/bold]` in a name is shown, not parsed), and with every unsafe
character escaped (`sync.core.safe_text`), so it cannot drive the terminal.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sync.cli.streaks import Grouped
from sync.cli.wording import (
    describe_config,
    describe_row,
    error_text,
    flow_error,
    partial_run,
    with_label,
)
from sync.core.safe_text import escape_unsafe
from sync.store.reports import NODE_COLUMNS, Corrupt, FlowConfig, StatusReport
from sync.vocabulary import AlertStatus, Event, RunStatus, SyncState

_STATE_STYLE: dict[str, str] = {
    SyncState.OK: "green",
    SyncState.ERROR: "red",
    SyncState.DELETED: "dim",
    RunStatus.PARTIAL: "yellow",
    RunStatus.FAILED: "red",
}
_EVENT_STYLE: dict[str, str] = {
    Event.CREATED: "green",
    Event.CHANGED: "yellow",
    Event.DELETED: "red",
    Event.RESTORED: "cyan",
    Event.ERROR: "bold red",
}
_COUNTS = ("requested", "created", "changed", "unchanged", "deleted", "failed")


def shown(value: object, style: str = "") -> Text:
    """Stored or vendor data as a cell: plain text, never markup, with unsafe characters escaped."""
    return Text(escape_unsafe("" if value is None else str(value)), style=style)


def _when(value: datetime | Corrupt | None) -> Text:
    if isinstance(value, Corrupt):
        return Text("corrupt", style="red")
    return Text(value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-")


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
            shown(run["id"]),
            _when(run["started_at"]),
            _when(run["finished_at"]),
            shown(run["triggered_by"]),
            shown(run["status"], style=_STATE_STYLE.get(run["status"], "")),
            *(shown(run[f"flows_{count}"]) for count in _COUNTS),
            shown(_run_note(report, run)),
        )
    return table


def _run_note(report: StatusReport, run: dict[str, object]) -> object:
    """A failed run's stored reason; for a partial one, which flows failed; and a change alert
    that could not be delivered."""
    failures = report.run_failures.get(run["id"])  # type: ignore[call-overload]
    note = run["error_message"]
    if failures is not None and not note:
        note = partial_run(failures, run["flows_failed"])
    if run.get("alert_status") == AlertStatus.FAILED:
        alert = f"change alert failed: {run.get('alert_error') or 'no reason recorded'}"
        note = f"{note}; {alert}" if note else alert
    return note


def never_fetched_table(report: StatusReport) -> Table:
    """Requested flows with no stored configuration: every fetch failed, or none was tried yet."""
    table = Table(
        title=f"Requested but never fetched ({report.never_fetched_total} of flows {report.requested})",
        title_justify="left",
    )
    for column in ("flow", "state", "attempts", "last attempt", "last error"):
        table.add_column(column, justify="right" if column in ("flow", "attempts") else "left")
    for missing in report.never_fetched:
        error = missing.last_error
        table.add_row(
            shown(missing.flow_id),
            shown("never fetched", style="red"),
            shown(missing.attempts),
            _when(missing.last_attempt_at),
            shown(
                error_text(error.error_kind, error.error_code, error.error_message)
                if error
                else "not tried yet"
            ),
        )
    if len(report.never_fetched) < report.never_fetched_total:
        table.caption = f"{report.never_fetched_total - len(report.never_fetched)} more not shown (use --all)"
    return table


def flows_table(report: StatusReport) -> Table:
    summary = ", ".join(f"{count} {state}" for state, count in sorted(report.states.items())) or "none yet"
    table = Table(title=shown(f"Flows ({report.flows_total}: {summary})"), title_justify="left")
    for column in ("flow", "name", "nodes", "state", "last changed", "last fetched", "last error"):
        table.add_column(column, justify="right" if column in ("flow", "nodes") else "left")
    for flow in report.flows:
        table.add_row(
            shown(flow["flow_id"]),
            shown(flow["name"]),
            shown(flow["node_count"]),
            shown(flow["sync_state"], style=_STATE_STYLE.get(flow["sync_state"], "")),
            _when(flow["last_changed_at"]),
            _when(flow["last_fetched_at"]),
            shown(flow_error(flow)),
        )
    if len(report.flows) < report.flows_total:
        table.caption = f"{report.flows_total - len(report.flows)} more flows not shown (use --all)"
    return table


def history_table(rows: list[Grouped]) -> Table:
    table = Table(title="History, newest first (UTC)", title_justify="left")
    table.add_column("when")
    table.add_column("run", justify="right")
    table.add_column("event")
    table.add_column("what", overflow="fold")
    for row in rows:
        entry = row.newest
        table.add_row(
            _when(entry.occurred_at),
            shown(entry.run_id if entry.run_id is not None else "-"),
            shown(entry.event, style=_EVENT_STYLE.get(entry.event, "")),
            # Each line escaped on its own: a line feed inside a name shows as `\n`, not as a new line.
            Text("\n".join(escape_unsafe(line) for line in describe_row(row))),
        )
    return table


def config_view(config: FlowConfig) -> Group:
    """One line saying which version it is and since when, then the nodes, codes with their labels."""
    table = Table()
    table.add_column("position", justify="right")
    table.add_column("waiting_time (s)", justify="right")
    table.add_column("status")
    table.add_column("channel")
    table.add_column("channel_cut")
    for node in config.nodes:
        table.add_row(*(shown(with_label(column, node[column], quote=False)) for column in NODE_COLUMNS))
    if not config.nodes:
        table.caption = "no nodes"
    return Group(shown(describe_config(config)), table)
