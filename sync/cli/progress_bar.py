"""Showing a run's progress: a bar on a terminal, DEBUG log lines elsewhere."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from sync.pipeline.ports import NoProgress
from sync.pipeline.ports import Progress as ProgressSink

log = logging.getLogger(__name__)


class BarProgress:
    """A rich progress bar on stderr."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            TextColumn("syncing flows"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None

    def start(self, total: int | None) -> None:
        self._bar.start()
        self._task = self._bar.add_task("sync", total=total)

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, count)

    def finish(self) -> None:
        self._bar.stop()


class LogProgress:
    """A DEBUG line at every tenth of the run, so a cron log stays one line per run at INFO."""

    def __init__(self) -> None:
        self._total: int | None = None
        self._done = 0
        self._next_mark = 0

    def start(self, total: int | None) -> None:
        self._total, self._done = total, 0
        self._next_mark = max(1, (total or 0) // 10)

    def advance(self, count: int) -> None:
        self._done += count
        if self._total and self._done >= self._next_mark:
            log.debug("synced %d of %d flows", self._done, self._total)
            self._next_mark = self._done + max(1, self._total // 10)

    def finish(self) -> None:
        pass


def progress_for(console: Console) -> ProgressSink:
    """The bar when stderr is a terminal, log lines otherwise."""
    if console.is_terminal and not console.is_dumb_terminal:
        return BarProgress(console)
    return LogProgress() if log.isEnabledFor(logging.DEBUG) else NoProgress()
