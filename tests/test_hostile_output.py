"""Vendor text on the operator's screen and in the logs: shown literally, escaped, never acted upon.

Names and reasons come from the vendor; `status`, `history` and the log lines show them as
text (never as rich markup) and show control, bidi and invisible format characters as
visible escapes, on a terminal and in a pipe alike, while the database keeps them as received.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.simulator import SimulatorConfig, SimulatorHandle, running_simulator
from sync.store.schema import flow_history, flows, sync_runs
from tests.conftest import settings_for
from tests.hostile_api import hostile_api
from tests.process import flowsync, flowsync_env, flowsync_on_a_terminal
from tests.test_sync_run import sync

# flow ID: (name as the vendor sends it, how flowsync shows it)
HOSTILE_NAMES = {
    1: ("[/bold]", "[/bold]"),
    2: ("[link=http://evil.example]pay[/link]", "[link=http://evil.example]pay[/link]"),
    3: ("\x1b]0;pwned\x07\x1b[2J", r"\x1b]0;pwned\x07\x1b[2J"),
    4: (
        "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07",
        r"\x1b]8;;http://evil.example\x07click\x1b]8;;\x07",
    ),
    5: ("\u202egnp.exe", r"\u202egnp.exe"),
    6: ("ok\rforged", r"ok\rforged"),
    7: ("line\n\x9bend\u2066", r"line\n\x9bend\u2066"),
    8: (":warning:[bold]", ":warning:[bold]"),
}
# A reason that tries markup, a screen clear, a right-to-left override and a forged log line.
HOSTILE_REASON = (
    "[/bold]denied[link=http://evil.example]x[/link]\x1b[2J\u202e"
    "\n2030-01-01T00:00:00Z INFO sync.pipeline.loop: run 99 ok"
)
SHOWN_REASON = (
    r"[/bold]denied[link=http://evil.example]x[/link]\x1b[2J\u202e"
    r"\n2030-01-01T00:00:00Z INFO sync.pipeline.loop: run 99 ok"
)
# Anything but a line feed that a terminal would act on or hide: C0 and C1 controls, DEL,
# bidirectional controls, zero-width and other invisible format characters, line separators.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def flat(text: str) -> str:
    """Table text without whitespace and cell borders, so that a wrapped cell reads as one string."""
    return re.sub(r"[\s│┃|]", "", text)


@pytest.fixture
def hostile_sim() -> Iterator[SimulatorHandle]:
    """The simulator serving flows whose names are hostile."""
    with running_simulator(SimulatorConfig(flow_count=len(HOSTILE_NAMES), seed=5)) as handle:
        for flow_id, (name, _) in HOSTILE_NAMES.items():
            flow = handle.catalog.get(flow_id)
            assert flow is not None
            handle.catalog.put({**flow, "name": name})
        yield handle


def test_hostile_names_are_shown_as_escaped_text_and_stored_as_received(
    engine: Engine, hostile_sim: SimulatorHandle, database_url: str
) -> None:
    """`status` and `history` print names literally, piped or on a terminal: no markup, no control."""
    sync(settings_for(hostile_sim, database_url, f"1-{len(HOSTILE_NAMES)}"), engine)
    with engine.connect() as connection:
        stored = dict(connection.execute(sa.select(flows.c.flow_id, flows.c.name)).all())
        snapshots = [row.snapshot for row in connection.execute(sa.select(flow_history.c.snapshot))]
    assert stored == {flow_id: name for flow_id, (name, _) in HOSTILE_NAMES.items()}
    assert sorted(s["name"] for s in snapshots) == sorted(name for name, _ in HOSTILE_NAMES.values())

    env = flowsync_env(None, database_url)
    status = flowsync("status", env=env)
    history = flowsync("history", env=env)
    for result in (status, history):
        assert result.returncode == 0, result.stderr
        assert not UNSAFE.search(result.stdout), result.stdout
    for flow_id, (_, shown) in HOSTILE_NAMES.items():
        assert flat(shown) in flat(status.stdout), shown
        assert flat(f'flow {flow_id} "{shown}": created with') in flat(history.stdout), shown

    for command in ("status", "history"):
        returncode, screen = flowsync_on_a_terminal(command, env=env)
        assert returncode == 0, screen
        assert "\x1b[" in screen, "a terminal gets colours"
        assert "\x1b]" not in screen, "no operating-system command: no hyperlink, no window title"
        assert "\x1b[2J" not in screen
        assert "\x07" not in screen
        assert "\u202e" not in screen
        assert r"\x1b]8;;http://evil.example\x07click" in screen


@pytest.mark.parametrize("code", ["-1", "-22"])
def test_a_hostile_reason_is_escaped_in_status_history_and_the_log(
    engine: Engine, sim: SimulatorHandle, database_url: str, code: str
) -> None:
    """An account (-1) or flow (-22) reason with markup and a forged log line is shown escaped everywhere."""
    sync(settings_for(sim, database_url, "1-2"), engine)
    with hostile_api({"status": code, "reason": HOSTILE_REASON}) as base_url:
        env = flowsync_env(sim, database_url, "1-2", FLOWSYNC_BASE_URL=base_url, FLOWSYNC_RETRIES="0")
        run = flowsync("sync", env=env)
    assert run.returncode == 1, run.stderr
    for line in run.stderr.splitlines():
        assert LOG_LINE.match(line), f"not a genuine log line: {line!r}"
    assert not UNSAFE.search(run.stderr)
    assert SHOWN_REASON in run.stderr

    with engine.connect() as connection:
        messages = connection.execute(
            sa.select(flow_history.c.error_message).where(flow_history.c.event == "error")
        ).scalars()
        run_error = connection.scalar(sa.select(sync_runs.c.error_message).where(sync_runs.c.id == 2))
        last_errors = connection.execute(sa.select(flows.c.last_error)).scalars().all()
    assert all(HOSTILE_REASON in str(message) for message in messages), "stored as received"
    if code == "-1":
        assert HOSTILE_REASON in str(run_error)
    else:
        assert all(HOSTILE_REASON in str(error) for error in last_errors)

    status = flowsync("status", env=env)
    history = flowsync("history", env=env)
    for result in (status, history):
        assert result.returncode == 0, result.stderr
        assert not UNSAFE.search(result.stdout), result.stdout
        assert flat(SHOWN_REASON) in flat(result.stdout)


def test_check_quotes_a_hostile_run_error_escaped(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """`flowsync check` names why the latest run failed with the vendor's reason escaped, on one line."""
    with hostile_api({"status": "-1", "reason": HOSTILE_REASON}) as base_url:
        report = sync(settings_for(sim, database_url, "1-2", base_url=base_url, retries=0), engine)
    assert report.status == "failed"
    check = flowsync("check", env=flowsync_env(None, database_url))
    assert check.returncode == 1, check.stderr
    assert check.stdout.count("\n") == 1
    assert not UNSAFE.search(check.stdout)
    assert SHOWN_REASON in check.stdout
