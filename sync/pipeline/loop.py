"""One sync run: fetch the selected flows from a source and write each result as it arrives.

`run_sync` knows only the two seams in `sync.pipeline.ports`: a source of flows and a
sink of results. Fetching is asyncio with at most `concurrency` requests in flight,
in one `TaskGroup`; one writer task drains the results in small batches and hands each
to the sink on a worker thread, so memory stays flat however many flows there are and
the event loop never waits on the database. An account-level error (`-1`, `-2`) stops
new requests at once. In `all` mode a single listing carries every flow, and flows it
no longer lists are marked deleted, unless that would delete more of the known flows
than the `DeletionGuard` allows; a failed listing deletes nothing.

A stop request (`StopRequest.set()`, from a signal handler) reaches the run through the
event loop's `call_soon_threadsafe`: requests in flight, a pending listing and its retry
waits are cancelled at once, and what was already fetched is still written.

The clock, the host name and the process id are arguments, so tests drive a run with a
fake clock and fakes of both seams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sync.core.outcomes import Failed, Fetched, FetchResult, Gone, RunCounts
from sync.core.selection import FlowSelection
from sync.errors import AccountError, ApiError, FlowError, PayloadError, StoreError
from sync.pipeline.ports import FlowSource, NoProgress, Progress, ResultSink
from sync.pipeline.stop import StopRequest
from sync.vocabulary import ErrorKind, RunStatus, Trigger

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# How long the writer lets results gather before writing a batch that is not full: one transaction
# (lock check, read of the stored rows, writes, commit) per ~50 ms instead of one per few flows.
BATCH_LINGER_S = 0.05
MAX_LOGGED_FAILURES = 3
# This many network failures in a row (after retries) mean the API is unreachable, not that each
# flow is broken: the run stops instead of spending hours retrying every remaining flow.
UNREACHABLE_AFTER = 20
LISTING_ENDPOINT = "flow/list"


@dataclass(frozen=True, slots=True)
class DeletionGuard:
    """How many of the known flows one listing may mark deleted without the operator's say-so.

    A listing is one answer of a third party: an empty or truncated one (a vendor bug, the wrong
    account) would otherwise mark every stored flow deleted, as rsync's `--max-delete` guards against.
    """

    max_share: float = 0.5
    confirmed: bool = False  # the operator confirmed a mass deletion for this run

    def refuses(self, deleting: int, known: int) -> bool:
        """True when deleting `deleting` of `known` flows needs a confirmation it does not have."""
        if self.confirmed or deleting == 0:
            return False
        return deleting == known or deleting > self.max_share * known


@dataclass(frozen=True, slots=True)
class RunReport:
    """How a run ended, as recorded in its `sync_runs` row."""

    run_id: int
    status: RunStatus
    counts: RunCounts
    error_message: str | None
    duration_s: float

    @property
    def exit_code(self) -> int:
        return 0 if self.status == RunStatus.OK else 1


@dataclass
class _FailureStreak:
    """Consecutive fetches that failed on the network; any other outcome ends the streak."""

    limit: int
    count: int = 0

    def add(self, error: ApiError) -> bool:
        """Count `error`; True once the streak reaches the limit."""
        self.count = self.count + 1 if error.kind == ErrorKind.NETWORK else 0
        return self.count >= self.limit

    def reset(self) -> None:
        self.count = 0


async def run_sync(
    source: FlowSource,
    sink: ResultSink,
    selection: FlowSelection,
    *,
    triggered_by: Trigger,
    concurrency: int,
    clock: Callable[[], datetime],
    host: str,
    pid: int,
    stop: StopRequest | None = None,
    progress: Progress | None = None,
    guard: DeletionGuard | None = None,
    linger_s: float = BATCH_LINGER_S,
    not_found_hint: str | None = None,
) -> RunReport:
    """Run one sync and record it through `sink`; never raises for API errors, only for a lost sink.

    The caller holds the run lock and has checked the schema (see `sync.app.jobs`).
    `not_found_hint` is added to the run's message when every request it made was answered
    HTTP 404: then the API's address is wrong, not the flows (the caller knows which setting to name).
    """
    progress = progress or NoProgress()
    started_at = clock()
    abandoned = sink.close_abandoned_runs(started_at)
    if abandoned:
        log.warning("closed %d earlier run(s) that never finished as failed: %s", len(abandoned), abandoned)
    requested = 0 if selection.everything else len(selection)
    run_id = sink.start_run(
        started_at,
        triggered_by=triggered_by,
        selection=str(selection),
        requested=requested,
        host=host,
        pid=pid,
    )
    run = _Run(
        source,
        sink,
        run_id,
        clock=clock,
        progress=progress,
        guard=guard or DeletionGuard(),
        concurrency=concurrency,
        linger_s=linger_s,
        not_found_hint=not_found_hint,
    )
    run.counts.requested = requested
    loop = asyncio.get_running_loop()

    def on_stop() -> None:  # from any thread, a signal handler included
        loop.call_soon_threadsafe(run.stop)

    finished = False
    try:
        with (stop or StopRequest()).listening(on_stop):
            if selection.everything:
                await run.sync_listing()
            else:
                await run.sync_ids(iter(selection))
        if run.account_error is not None:
            await asyncio.to_thread(sink.record_run_error, run_id, clock(), run.account_error)
        finished = True
    except* StoreError as group:
        run.run_error = f"the database failed during the run: {group.exceptions[0]}"
        finished = True
    finally:
        progress.finish()
        if not finished:
            run.run_error = "the run was interrupted by an unexpected error (see the log)"
        report = run.finish((clock() - started_at).total_seconds())
    return report


def _not_found(error: FlowError) -> bool:
    return error.kind == ErrorKind.HTTP and error.code == "404"


class _Run:
    """The moving parts of one run, shared by its fetch and write tasks (all on one event loop)."""

    def __init__(
        self,
        source: FlowSource,
        sink: ResultSink,
        run_id: int,
        *,
        clock: Callable[[], datetime],
        progress: Progress,
        guard: DeletionGuard,
        concurrency: int,
        linger_s: float,
        not_found_hint: str | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.run_id = run_id
        self.clock = clock
        self.progress = progress
        self.guard = guard
        self.concurrency = concurrency
        self.linger_s = linger_s
        self.not_found_hint = not_found_hint
        self.not_found = 0  # flows whose fetch was answered HTTP 404
        self.counts = RunCounts()
        self.account_error: AccountError | None = None
        self.run_error: str | None = None
        self.stopped = False
        self.failures: list[str] = []
        self._fetches: list[asyncio.Task[None]] = []
        self._listing_arrived = False
        self._network_failures = _FailureStreak(max(UNREACHABLE_AFTER, 2 * concurrency))

    def stop(self) -> None:
        """A stop was asked for: cancel every fetch in flight (results already fetched are still written)."""
        self.stopped = True
        self._cancel_fetches()

    def _cancel_fetches(self) -> None:
        current = asyncio.current_task()
        for fetch in self._fetches:
            if fetch is not current:
                fetch.cancel()

    async def sync_ids(self, flow_ids: Iterator[int]) -> None:
        """Fetch the given IDs, `concurrency` at a time, writing results as they arrive."""
        self.progress.start(self.counts.requested)
        queue: asyncio.Queue[FetchResult | None] = asyncio.Queue(maxsize=self.concurrency + BATCH_SIZE)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._write_from(queue))
            self._fetches = [
                group.create_task(self._fetch_into(flow_ids, queue)) for _ in range(self.concurrency)
            ]
            if self.stopped:  # asked before the fetches existed to be cancelled
                self._cancel_fetches()
            # A fetch cancelled by a stop or an account error ends quietly; the writer then drains.
            await asyncio.wait(self._fetches)
            await queue.put(None)

    async def sync_listing(self) -> None:
        """`all` mode: one listing, then deletions for the known flows it no longer lists."""
        fetch = asyncio.ensure_future(self._fetch_listing())
        self._fetches = [fetch]
        if self.stopped:
            fetch.cancel()
        try:
            await fetch
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not fetch.cancelled() or (task is not None and task.cancelling()):
                raise
            if not self._listing_arrived:
                self.run_error = "stopped by a signal before the flow list arrived, so nothing was synced"

    async def _fetch_listing(self) -> None:
        try:
            listing = await self.source.fetch_listing()
        except AccountError as exc:
            self._account_refused(exc)
            return
        except ApiError as exc:
            await asyncio.to_thread(self.sink.record_run_error, self.run_id, self.clock(), exc)
            self.run_error = f"the flow list could not be fetched, so nothing was synced: {exc}"
            if _not_found(exc) and self.not_found_hint:
                self.run_error += f"; {self.not_found_hint}"
            log.error("run %d stopped: %s", self.run_id, self.run_error, extra=self._fields())
            return
        # From here a stop lets the batch in hand finish and writes no further one.
        self._listing_arrived = True
        self._fetches = []
        listed = listing.flow_ids
        known = await asyncio.to_thread(lambda: list(self.sink.known_flow_ids()))
        missing = [flow_id for flow_id in known if flow_id not in listed]
        total = len(listing) + len(missing)
        self.counts.requested = total
        await asyncio.to_thread(self.sink.set_requested, self.run_id, total)
        if self.guard.refuses(len(missing), len(known)):
            await self._refuse_mass_deletion(len(missing), len(known))
            return
        self.progress.start(total)
        # The listing is validated a batch at a time, right before that batch is written.
        for batch in listing.batches(BATCH_SIZE):
            if not await self._write_unless_stopped(batch):
                return
        for start in range(0, len(missing), BATCH_SIZE):
            if not await self._write_unless_stopped([Gone(i) for i in missing[start : start + BATCH_SIZE]]):
                return

    async def _refuse_mass_deletion(self, deleting: int, known: int) -> None:
        share = "all" if deleting == known else f"more than {self.guard.max_share:.0%}"
        message = (
            f"the flow list would mark {deleting} of the {known} known flows deleted ({share}), so nothing "
            "was written; if those flows really are gone, confirm with one run of `flowsync sync "
            "--confirm-deletions`"
        )
        error = PayloadError(message, endpoint=LISTING_ENDPOINT)
        await asyncio.to_thread(self.sink.record_run_error, self.run_id, self.clock(), error)
        self.run_error = message
        log.error("run %d: %s", self.run_id, message, extra=self._fields())

    async def _write_unless_stopped(self, results: Sequence[FetchResult]) -> bool:
        if self.stopped:
            return False
        await self._write(results)
        return True

    async def _fetch_into(self, flow_ids: Iterator[int], queue: asyncio.Queue[FetchResult | None]) -> None:
        # All fetches share one iterator: each takes the next ID when it is free.
        for flow_id in flow_ids:
            try:
                snapshot = await self.source.fetch_flow(flow_id)
            except AccountError as exc:
                self._account_refused(exc)
                return
            except ApiError as exc:
                await queue.put(Failed(flow_id, exc))
                if self._network_failures.add(exc):
                    self._unreachable(exc)
                    return
                continue
            self._network_failures.reset()
            await queue.put(Gone(flow_id) if snapshot is None else Fetched(flow_id, snapshot))

    async def _write_from(self, queue: asyncio.Queue[FetchResult | None]) -> None:
        done = False
        while not done:
            batch: list[FetchResult] = []
            item = await queue.get()
            if item is not None and queue.qsize() < BATCH_SIZE - 1:
                await asyncio.sleep(self.linger_s)
            while item is not None:
                batch.append(item)
                if len(batch) >= BATCH_SIZE or queue.empty():
                    break
                item = queue.get_nowait()
            done = item is None
            if batch:
                await self._write(batch)

    async def _write(self, batch: Sequence[FetchResult]) -> None:
        outcomes = await asyncio.to_thread(self.sink.write_batch, self.run_id, self.clock(), batch)
        self.counts.add(outcomes)
        for result in batch:
            if isinstance(result, Failed):
                self.not_found += _not_found(result.error)
                if len(self.failures) < MAX_LOGGED_FAILURES:
                    self.failures.append(str(result.error))
        self.progress.advance(len(batch))

    def _account_refused(self, error: AccountError) -> None:
        """The account is refused: no request may follow, so every other fetch is cancelled at once."""
        if self.account_error is None:
            self.account_error = error
            log.error(
                "run %d stopped: the API refused the account: %s",
                self.run_id,
                error.message,
                extra=self._fields(),
            )
        self._cancel_fetches()

    def _unreachable(self, error: ApiError) -> None:
        if self.run_error is None:
            self.run_error = (
                f"stopped after {self._network_failures.count} network failures in a row; "
                f"the API looks unreachable (last: {error.message})"
            )
            log.error("run %d stopped: %s", self.run_id, self.run_error, extra=self._fields())
        self._cancel_fetches()

    def finish(self, duration_s: float) -> RunReport:
        """Record how the run ended (a sink that fails here is logged: the report still says it)."""
        status, message = self._verdict()
        report = RunReport(self.run_id, status, self.counts, message, duration_s)
        try:
            self.sink.finish_run(
                self.run_id, self.clock(), status=status, counts=self.counts, error_message=message
            )
        except StoreError as exc:
            log.error(
                "run %d could not be recorded as %s: %s", self.run_id, status, exc, extra=self._fields()
            )
        self._log(report)
        return report

    def _verdict(self) -> tuple[RunStatus, str | None]:
        if self.run_error:
            return RunStatus.FAILED, self.run_error
        if self.account_error:
            refusal = self.account_error.message
            return RunStatus.FAILED, f"the API refused the account, so the run stopped: {refusal}"
        settled, requested = self.counts.settled, self.counts.requested
        if self.stopped and settled < requested:
            return RunStatus.FAILED, f"stopped by a signal after {settled} of {requested} flows"
        if self.counts.failed:
            return RunStatus.PARTIAL, self._all_not_found()
        return RunStatus.OK, None

    def _all_not_found(self) -> str | None:
        """Why a run whose every flow was answered HTTP 404 failed: the API's address, most likely."""
        if not self.not_found_hint or self.not_found == 0 or self.not_found != self.counts.requested:
            return None
        return f"every flow failed with HTTP 404 Not Found; {self.not_found_hint}"

    def _log(self, report: RunReport) -> None:
        c = report.counts
        log.info(
            "run %d %s in %.1f s: %d requested, %d created, %d changed, %d unchanged, %d deleted, "
            "%d failed%s",
            report.run_id,
            report.status,
            report.duration_s,
            c.requested,
            c.created,
            c.changed,
            c.unchanged,
            c.deleted,
            c.failed,
            f" ({report.error_message})" if report.error_message else "",
            extra={
                **self._fields(),
                "status": report.status.value,
                "duration_s": round(report.duration_s, 3),
            },
        )
        if self.failures:
            more = c.failed - len(self.failures)
            log.warning(
                "run %d: failed flows include %s%s",
                report.run_id,
                "; ".join(self.failures),
                f" (and {more} more; see `flowsync history`)" if more > 0 else "",
                extra=self._fields(),
            )
        if report.status == RunStatus.PARTIAL and report.error_message:
            # What the failures have in common, for an operator who only sees warnings (-q, cron).
            log.warning("run %d: %s", report.run_id, report.error_message, extra=self._fields())

    def _fields(self) -> dict[str, object]:
        """What a structured log record of this run carries besides its message."""
        counts = {column.removeprefix("flows_"): value for column, value in self.counts.as_columns().items()}
        return {"run_id": self.run_id, "counts": counts}
