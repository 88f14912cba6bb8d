"""Running the real `flowsync` command in a child process, as operators and cron do."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import sqlalchemy as sa

from sync.simulator import SimulatorHandle

COMMAND = [sys.executable, "-m", "sync"]
DEADLINE_S = 60.0


def flowsync_env(
    sim: SimulatorHandle | None, database_url: str | None, flow_ids: str | None = "1-20", **extra: str
) -> dict[str, str]:
    """The environment a deployment would set, pointing at the simulator and a test database."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FLOWSYNC_") or k.startswith("FLOWSYNC_TEST_")
    }
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    if database_url is not None:
        env["FLOWSYNC_DATABASE_URL"] = database_url
    if sim is not None:
        env.update(
            FLOWSYNC_BASE_URL=sim.base_url,
            FLOWSYNC_API_KEY=sim.config.api_key,
            FLOWSYNC_API_SECRET=sim.config.api_secret,
            FLOWSYNC_TIMEOUT="2",
            FLOWSYNC_RETRIES="1",
        )
    if flow_ids is not None:
        env["FLOWSYNC_FLOW_IDS"] = flow_ids
    env.update(extra)
    return env


def flowsync(*args: str, env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `flowsync ARGS` to completion and capture its output."""
    return subprocess.run(
        [*COMMAND, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )


def start_flowsync(*args: str, env: Mapping[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start `flowsync ARGS` in the background (the caller stops it)."""
    return subprocess.Popen(
        [*COMMAND, *args],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll until `condition()` holds; fail with `what` after `timeout_s` (a deadline, not a timing claim)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def scalar(engine: sa.Engine, query: str) -> object:
    with engine.connect() as connection:
        return connection.exec_driver_sql(query).scalar()


def flowsync_on_a_terminal(*args: str, env: Mapping[str, str], columns: int = 200) -> tuple[int, str]:
    """Run `flowsync ARGS` with stdout on a pseudo-terminal, as an operator sees it: exit code, output."""
    main_fd, terminal_fd = os.openpty()
    try:
        process = subprocess.Popen(
            [*COMMAND, *args],
            env={**env, "COLUMNS": str(columns), "TERM": "xterm-256color"},
            stdin=subprocess.DEVNULL,
            stdout=terminal_fd,
            stderr=subprocess.DEVNULL,
        )
    finally:
        os.close(terminal_fd)
    output = bytearray()
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not chunk:
                break
            output += chunk
        return process.wait(timeout=max(0.1, deadline - time.monotonic())), output.decode()
    finally:
        process.kill()
        os.close(main_fd)
