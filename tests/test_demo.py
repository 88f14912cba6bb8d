"""`flowsync demo` shows every event type and run outcome, on a fresh directory, with no configuration."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

from rich.console import Console

from sync.cli.demo import DB_NAME, run_demo


def test_the_demo_tours_every_event_and_outcome(tmp_path: Path) -> None:
    """The tour records created, changed, deleted, restored and error events, and ok/partial/failed runs."""
    output = io.StringIO()
    run_demo(tmp_path / "tour", Console(file=output, width=200))
    text = output.getvalue()
    database = sqlite3.connect(tmp_path / "tour" / DB_NAME)
    try:
        events = {row[0] for row in database.execute("SELECT DISTINCT event FROM flow_history")}
        statuses = {row[0] for row in database.execute("SELECT DISTINCT status FROM sync_runs")}
        kinds = {row[0] for row in database.execute("SELECT DISTINCT error_kind FROM flow_history")}
        triggers = {row[0] for row in database.execute("SELECT DISTINCT triggered_by FROM sync_runs")}
    finally:
        database.close()
    assert events == {"created", "changed", "deleted", "restored", "error"}
    assert statuses == {"ok", "partial", "failed"}
    assert {"api", "payload"} <= kinds
    assert triggers == {"demo"}
    for shown in ("Latest runs", "History, newest first", "restored", "account: api error -2"):
        assert shown in text


def test_the_demo_starts_afresh_each_time(tmp_path: Path) -> None:
    """Running the demo twice gives the same tour, not a continuation of the last one."""
    for _ in range(2):
        run_demo(tmp_path, Console(file=io.StringIO()))
    database = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert database.execute("SELECT min(id) FROM sync_runs").fetchone() == (1,)
    finally:
        database.close()
