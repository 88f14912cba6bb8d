"""`flowsync demo` shows every event type and run outcome, on a fresh directory, with no configuration."""

from __future__ import annotations

import io
import re
import sqlite3
from pathlib import Path

from rich.console import Console

from sync.cli.demo import DB_NAME, ROUNDS, run_demo


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


def named_changes(story: str) -> set[int]:
    """The flows a round's story says change: `flow 2 changes`, `flows 1 and 8 change`, ..."""
    one = re.search(r"\bflow (\d+) changes\b", story)
    if one:
        return {int(one.group(1))}
    many = re.search(r"\bflows ([\d, ]+) and (\d+) change\b", story)
    if many:
        return {int(n) for n in many.group(1).split(",")} | {int(many.group(2))}
    return set()


def test_each_round_does_what_its_story_says(tmp_path: Path) -> None:
    """The events each run recorded are the ones its round's description announced, no more, no less."""
    output = io.StringIO()
    run_demo(tmp_path, Console(file=output, width=1000))
    lines = output.getvalue().splitlines()
    stories = [lines[i + 1] for i, line in enumerate(lines) if re.fullmatch(r"─+ round \d+ ─+", line)]
    assert len(stories) == len(ROUNDS) == 6
    database = sqlite3.connect(tmp_path / DB_NAME)
    try:
        events: dict[int, dict[str, set[int | None]]] = {}
        for run_id, event, flow_id in database.execute("SELECT run_id, event, flow_id FROM flow_history"):
            events.setdefault(run_id, {}).setdefault(event, set()).add(flow_id)
        statuses = dict(database.execute("SELECT id, status FROM sync_runs").fetchall())
    finally:
        database.close()
    changed: list[set[int | None]] = [{*named_changes(story)} for story in stories]
    assert changed[1], "round 2 names the flows it changes"
    assert changed[2], "round 3 names the flows it changes"
    expected: dict[int, dict[str, set[int | None]]] = {
        1: {"created": set(range(1, 9)), "error": {9}},
        2: {"changed": changed[1], "error": {5, 9}},  # 3 (503 twice) and 1 (-16 once) were fetched
        3: {"deleted": {4}, "changed": changed[2], "error": {9}},
        4: {"restored": {4}, "error": {9}},
        5: {"error": {None}},  # the account, before any flow
        6: {"deleted": {6}},  # flow 9 is not listed, so not asked for
    }
    assert events == expected
    assert statuses == {1: "partial", 2: "partial", 3: "partial", 4: "partial", 5: "failed", 6: "ok"}
    assert "flow 4 is deleted" in stories[2]
    assert "flow 4 is back" in stories[3]
    assert "refuses the account (-2)" in stories[4]
    assert "flow 6 is no longer listed" in stories[5]
