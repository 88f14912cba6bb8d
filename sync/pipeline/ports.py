"""The two seams of a run: where flows come from, and where what was learned goes.

`run_sync` depends on these protocols only. In production the vendor API client
(`sync.vendor.source.ApiFlowSource`) is the source and the SQL store
(`sync.store.sink.SqlResultSink`) the sink; unit tests drive the loop with small
in-memory fakes of both and a fake clock.

A source is asynchronous (it waits on the network). A sink is blocking (it waits on
the database): the loop calls it from a worker thread, so the event loop keeps
fetching while a batch is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

from sync.core.outcomes import FetchResult, RunCounts
from sync.core.snapshot import FlowSnapshot
from sync.errors import FlowError
from sync.vocabulary import Outcome, RunStatus, Trigger


class FlowListing(Protocol):
    """Every flow of the account, from one listing: validated a batch at a time."""

    @property
    def flow_ids(self) -> Collection[int]:
        """Every listed flow, whether or not its content validated (a listed flow is never deleted)."""
        ...

    def __len__(self) -> int:
        """How many items the listing has (each settles as one result)."""
        ...

    def batches(self, size: int) -> Iterator[list[FetchResult]]:
        """The listed items as results, `size` at a time, in the listing's order."""
        ...


class FlowSource(Protocol):
    """Where flows come from. Failures raise `sync.errors.ApiError` (an `AccountError` stops the run)."""

    async def fetch_flow(self, flow_id: int) -> FlowSnapshot | None:
        """One flow's configuration, or None when the source says the flow no longer exists."""
        ...

    async def fetch_listing(self) -> FlowListing:
        """Every flow of the account."""
        ...


class ResultSink(Protocol):
    """Where a run records itself and what it learned. Every call blocks; `StoreError` ends the run."""

    def close_abandoned_runs(self, now: datetime) -> list[int]:
        """Close runs that an earlier process left running; their ids."""
        ...

    def start_run(
        self, now: datetime, *, triggered_by: Trigger, selection: str, requested: int, host: str, pid: int
    ) -> int:
        """Record a new run; its id."""
        ...

    def set_requested(self, run_id: int, requested: int) -> None:
        """How many flows the run settles, once a listing has said."""
        ...

    def known_flow_ids(self) -> Iterable[int]:
        """Every stored flow that is not already deleted (for a listing's deletions)."""
        ...

    def write_batch(self, run_id: int, now: datetime, results: Sequence[FetchResult]) -> Counter[Outcome]:
        """Store a batch of results; how many flows ended in each outcome."""
        ...

    def record_run_error(self, run_id: int, now: datetime, error: FlowError) -> None:
        """An error about the whole run (the account refused, the listing unusable)."""
        ...

    def finish_run(
        self, run_id: int, now: datetime, *, status: RunStatus, counts: RunCounts, error_message: str | None
    ) -> None:
        """Record how the run ended."""
        ...


class Progress(Protocol):
    """Where a run reports how far it got (a progress bar on a terminal, log lines elsewhere)."""

    def start(self, total: int | None) -> None: ...
    def advance(self, count: int) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    """Reports nothing."""

    def start(self, total: int | None) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def finish(self) -> None:
        pass
