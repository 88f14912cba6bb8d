"""The run loop (`sync.pipeline.loop.run_sync`) driven through its two seams with in-memory fakes.

No network, no database, no sleeping: a fake source answers from a table (or waits on an
event the test controls), a fake sink keeps what it is given, and a fake clock ticks one
second per reading. The end-to-end tests (`test_sync_run.py`) prove the real adapters.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from sync.core.outcomes import Failed, Fetched, FetchResult, Gone, RunCounts
from sync.core.selection import ALL, FlowSelection, parse_flow_ids
from sync.core.snapshot import FlowSnapshot, NodeSnapshot
from sync.errors import AccountError, ApiError, FlowError, PayloadError, StoreError, TransientError
from sync.pipeline.loop import DeletionGuard, RunReport, run_sync
from sync.pipeline.stop import StopRequest
from sync.vocabulary import ErrorKind, Outcome, RunStatus, Trigger

START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
# A fetch told to wait is released only by cancellation; past this deadline the test fails instead of
# hanging (a deadline for a broken loop, never reached by a working one).
NEVER_S = 30.0


class FakeClock:
    """Each reading is one second after the previous one."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        return START + timedelta(seconds=self.readings - 1)


def snapshot(flow_id: int) -> FlowSnapshot:
    return FlowSnapshot(flow_id, f"flow {flow_id}", (NodeSnapshot(1, 30, 1, "sms", 0),))


Answer = FlowSnapshot | None | ApiError | asyncio.Event
"""What the fake source does for one flow: answer it, say it is gone, fail, or wait for the event."""


@dataclass
class FakeListing:
    results: list[FetchResult]

    @property
    def flow_ids(self) -> Collection[int]:
        return {r.flow_id for r in self.results if r.flow_id is not None}

    def __len__(self) -> int:
        return len(self.results)

    def batches(self, size: int) -> Iterator[list[FetchResult]]:
        for start in range(0, len(self.results), size):
            yield self.results[start : start + size]


@dataclass
class FakeSource:
    answers: dict[int, Answer] = field(default_factory=dict)
    listing: FakeListing | ApiError | asyncio.Event | None = None
    requested: list[int] = field(default_factory=list)

    async def fetch_flow(self, flow_id: int) -> FlowSnapshot | None:
        self.requested.append(flow_id)
        answer = self.answers.get(flow_id, snapshot(flow_id))
        if isinstance(answer, asyncio.Event):
            await asyncio.wait_for(answer.wait(), NEVER_S)
            raise AssertionError(f"the fetch of flow {flow_id} was not cancelled")
        if isinstance(answer, ApiError):
            raise answer
        return answer

    async def fetch_listing(self) -> FakeListing:
        listing = self.listing
        if isinstance(listing, asyncio.Event):
            await asyncio.wait_for(listing.wait(), NEVER_S)
            raise AssertionError("the listing was not cancelled")
        if isinstance(listing, ApiError):
            raise listing
        assert listing is not None
        return listing


@dataclass
class FakeSink:
    """Keeps every call; a result for a known flow is unchanged, for a new one created."""

    known: set[int] = field(default_factory=set)
    fail_on_batch: int | None = None
    on_batch: Callable[[int], None] = lambda _number: None
    started: dict[str, object] = field(default_factory=dict)
    batches: list[list[FetchResult]] = field(default_factory=list)
    run_errors: list[FlowError] = field(default_factory=list)
    requested: list[int] = field(default_factory=list)
    finished: dict[str, object] = field(default_factory=dict)
    times: list[datetime] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)

    def close_abandoned_runs(self, now: datetime) -> list[int]:
        return []

    def start_run(
        self, now: datetime, *, triggered_by: Trigger, selection: str, requested: int, host: str, pid: int
    ) -> int:
        self.started = {
            "now": now,
            "triggered_by": triggered_by,
            "selection": selection,
            "requested": requested,
            "host": host,
            "pid": pid,
        }
        return 7

    def set_requested(self, run_id: int, requested: int) -> None:
        self.requested.append(requested)

    def known_flow_ids(self) -> Iterable[int]:
        return sorted(self.known)

    def write_batch(self, run_id: int, now: datetime, results: Sequence[FetchResult]) -> Counter[Outcome]:
        self.threads.add(threading.current_thread().name)
        self.times.append(now)
        if self.fail_on_batch is not None and len(self.batches) + 1 == self.fail_on_batch:
            raise StoreError("the server went away")
        self.batches.append(list(results))
        outcomes: Counter[Outcome] = Counter()
        for result in results:
            if isinstance(result, Failed):
                outcomes[Outcome.FAILED] += 1
            elif isinstance(result, Gone):
                deleted = result.flow_id in self.known
                self.known.discard(result.flow_id)
                outcomes[Outcome.DELETED if deleted else Outcome.UNCHANGED] += 1
            else:
                created = result.flow_id not in self.known
                self.known.add(result.flow_id)
                outcomes[Outcome.CREATED if created else Outcome.UNCHANGED] += 1
        self.on_batch(len(self.batches))
        return outcomes

    def record_run_error(self, run_id: int, now: datetime, error: FlowError) -> None:
        self.run_errors.append(error)

    def finish_run(
        self, run_id: int, now: datetime, *, status: RunStatus, counts: RunCounts, error_message: str | None
    ) -> None:
        self.finished = {"now": now, "status": status, "counts": counts, "error_message": error_message}

    @property
    def written(self) -> list[FetchResult]:
        return [result for batch in self.batches for result in batch]


def run(
    source: FakeSource,
    sink: FakeSink,
    selection: FlowSelection,
    *,
    concurrency: int = 4,
    stop: StopRequest | None = None,
    guard: DeletionGuard | None = None,
    clock: FakeClock | None = None,
) -> RunReport:
    return asyncio.run(
        run_sync(
            source,
            sink,
            selection,
            triggered_by=Trigger.MANUAL,
            concurrency=concurrency,
            clock=clock or FakeClock(),
            host="worker-1",
            pid=4711,
            stop=stop,
            guard=guard,
            linger_s=0,
        )
    )


def network_error(flow_id: int) -> TransientError:
    return TransientError(
        "connection failed", endpoint=f"flow/details/{flow_id}", flow_id=flow_id, kind=ErrorKind.NETWORK
    )


def test_every_requested_flow_settles_once_with_exact_counts() -> None:
    """Created, unchanged, gone and failed flows add up to what was requested, each written once."""
    source = FakeSource(
        answers={3: None, 4: PayloadError("body is an HTML page", endpoint="flow/details/4", flow_id=4)}
    )
    sink = FakeSink(known={2, 3})
    report = run(source, sink, parse_flow_ids("1-6"))
    assert (report.status, report.exit_code) == (RunStatus.PARTIAL, 1)
    assert report.counts == RunCounts(requested=6, created=3, unchanged=1, deleted=1, failed=1)
    assert sorted(r.flow_id for r in sink.written if r.flow_id is not None) == [1, 2, 3, 4, 5, 6]
    assert sink.finished["status"] == RunStatus.PARTIAL
    assert sink.finished["counts"] == report.counts


def test_the_run_records_who_ran_it_and_when_from_its_arguments() -> None:
    """Host, process id and every timestamp come from the arguments, not from the machine."""
    clock = FakeClock()
    sink = FakeSink()
    report = run(FakeSource(), sink, parse_flow_ids("1-3"), clock=clock)
    assert sink.started == {
        "now": START,
        "triggered_by": Trigger.MANUAL,
        "selection": "1-3",
        "requested": 3,
        "host": "worker-1",
        "pid": 4711,
    }
    assert sink.finished["now"] == START + timedelta(seconds=clock.readings - 1)
    assert report.duration_s == clock.readings - 2  # from the start reading to the duration's
    assert all(START < when < sink.finished["now"] for when in sink.times)  # type: ignore[operator]


def test_batches_are_written_off_the_event_loop_thread() -> None:
    """The sink blocks; the loop hands it every batch on a worker thread so fetching goes on."""
    sink = FakeSink()
    run(FakeSource(), sink, parse_flow_ids("1-3"))
    assert sink.threads
    assert threading.main_thread().name not in sink.threads


def test_an_account_error_mid_run_stops_every_request_and_is_recorded_once() -> None:
    """After -1 no further request is sent; fetches waiting elsewhere are cancelled, not written."""
    never = asyncio.Event()
    refused = AccountError("API status -1", endpoint="flow/details/5", flow_id=5, code="-1")
    answers: dict[int, Answer] = dict.fromkeys(range(1, 5), never)
    answers[5] = refused
    source = FakeSource(answers=answers)
    sink = FakeSink()
    report = run(source, sink, parse_flow_ids("1-100"), concurrency=5)
    assert report.status == RunStatus.FAILED
    assert "refused the account" in (report.error_message or "")
    assert sorted(source.requested) == [1, 2, 3, 4, 5]
    assert sink.written == []
    assert sink.run_errors == [refused]


def test_a_stop_mid_run_cancels_requests_in_flight_and_writes_what_was_fetched() -> None:
    """Flows already fetched are written; the ones waiting on the network are not; the run says why."""
    stop = StopRequest()
    never = asyncio.Event()
    source = FakeSource(answers=dict.fromkeys(range(4, 11), never))
    sink = FakeSink(on_batch=lambda _n: stop.set() if len(sink.written) >= 3 else None)
    report = run(source, sink, parse_flow_ids("1-10"), concurrency=3, stop=stop)
    assert report.status == RunStatus.FAILED
    assert sorted(r.flow_id for r in sink.written if r.flow_id is not None) == [1, 2, 3]
    assert report.error_message == "stopped by a signal after 3 of 10 flows"
    assert len(source.requested) < 10


def test_a_stop_asked_before_the_run_starts_fetches_nothing() -> None:
    """A stop that is already set when the run begins cancels every fetch before its first request."""
    stop = StopRequest()
    stop.set()
    source = FakeSource()
    report = run(source, FakeSink(), parse_flow_ids("1-10"), stop=stop)
    assert source.requested == []
    assert report.error_message == "stopped by a signal after 0 of 10 flows"


def test_a_stop_while_the_listing_is_pending_cancels_it_at_once() -> None:
    """A listing that hangs (or waits to retry) ends with the stop; the run says it was stopped."""
    stop = StopRequest()
    pending = asyncio.Event()
    source = FakeSource(listing=pending)
    sink = FakeSink(known={1, 2})

    async def stop_soon() -> RunReport:
        task = asyncio.create_task(
            run_sync(
                source,
                sink,
                ALL,
                triggered_by=Trigger.SCHEDULE,
                concurrency=2,
                clock=FakeClock(),
                host="h",
                pid=1,
                stop=stop,
                linger_s=0,
            )
        )
        await asyncio.sleep(0)  # let the run reach the listing
        await asyncio.to_thread(stop.set)  # as a signal handler would, from another thread
        return await task

    report = asyncio.run(stop_soon())
    assert report.status == RunStatus.FAILED
    assert report.error_message == "stopped by a signal before the flow list arrived, so nothing was synced"
    assert sink.written == []
    assert sink.run_errors == []


def test_a_sink_that_fails_ends_the_run_as_failed_with_the_cause() -> None:
    """A lost database stops the run at the next batch; what was written stays counted."""
    sink = FakeSink(fail_on_batch=2)
    never = asyncio.Event()
    source = FakeSource(answers=dict.fromkeys(range(300, 1001), never))
    report = run(source, sink, parse_flow_ids("1-1000"), concurrency=2)
    assert report.status == RunStatus.FAILED
    assert report.error_message == "the database failed during the run: the server went away"
    assert report.counts.created == len(sink.written) > 0


def test_a_listing_that_fails_deletes_nothing_and_records_why() -> None:
    """A listing the API refuses writes no result at all: no flow is marked deleted."""
    failure = TransientError("HTTP 503", endpoint="flow/list", code="503", kind=ErrorKind.HTTP)
    sink = FakeSink(known={1, 2, 3})
    report = run(FakeSource(listing=failure), sink, ALL)
    assert report.status == RunStatus.FAILED
    assert report.error_message == f"the flow list could not be fetched, so nothing was synced: {failure}"
    assert sink.written == []
    assert sink.run_errors == [failure]


def test_a_listing_marks_the_known_flows_it_lacks_deleted() -> None:
    """`all` mode: the listed flows are written, then the known flows the listing lacks as gone."""
    listing = FakeListing([Fetched(i, snapshot(i)) for i in (1, 2, 3, 5)])
    sink = FakeSink(known={1, 2, 3, 4})
    report = run(FakeSource(listing=listing), sink, ALL)
    assert report.status == RunStatus.OK
    assert report.counts == RunCounts(requested=5, created=1, unchanged=3, deleted=1)
    assert sink.requested == [5]
    assert [r for r in sink.written if isinstance(r, Gone)] == [Gone(4)]


@pytest.mark.parametrize(
    ("listed", "known", "guard", "refused"),
    [
        pytest.param(0, 10, DeletionGuard(), True, id="empty listing"),
        pytest.param(4, 10, DeletionGuard(), True, id="60% gone"),
        pytest.param(5, 10, DeletionGuard(), False, id="50% gone"),
        pytest.param(0, 1, DeletionGuard(), True, id="the only flow gone"),
        pytest.param(0, 10, DeletionGuard(max_share=1.0), True, id="all gone, whatever the share"),
        pytest.param(1, 10, DeletionGuard(max_share=1.0), False, id="share 100%"),
        pytest.param(0, 10, DeletionGuard(confirmed=True), False, id="confirmed"),
        pytest.param(0, 0, DeletionGuard(), False, id="nothing known yet"),
    ],
)
def test_a_listing_that_would_delete_too_many_flows_writes_nothing(
    listed: int, known: int, guard: DeletionGuard, refused: bool
) -> None:
    """Like rsync's --max-delete: past the share (and always for all of them) nothing is written."""
    listing = FakeListing([Fetched(i, snapshot(i)) for i in range(1, listed + 1)])
    sink = FakeSink(known=set(range(1, known + 1)))
    report = run(FakeSource(listing=listing), sink, ALL, guard=guard)
    if refused:
        assert report.status == RunStatus.FAILED
        assert sink.written == []
        assert [e.kind for e in sink.run_errors] == [ErrorKind.PAYLOAD]
        assert "--confirm-deletions" in (report.error_message or "")
        assert f"{known - listed} of the {known} known flows" in (report.error_message or "")
    else:
        assert report.status == RunStatus.OK
        assert report.counts.deleted == known - listed


def test_a_stop_between_listing_batches_writes_no_further_batch() -> None:
    """After the listing arrived, a stop lets the batch in hand finish and writes no further one."""
    stop = StopRequest()
    listing = FakeListing([Fetched(i, snapshot(i)) for i in range(1, 1001)])
    sink = FakeSink(on_batch=lambda _n: stop.set())
    report = run(FakeSource(listing=listing), sink, ALL, stop=stop)
    assert len(sink.batches) == 1
    assert report.error_message == "stopped by a signal after 200 of 1000 flows"


def test_a_streak_of_network_failures_ends_the_run_as_unreachable() -> None:
    """Twenty network failures in a row stop the run instead of trying every remaining flow."""
    source = FakeSource(answers={flow_id: network_error(flow_id) for flow_id in range(1, 10_001)})
    sink = FakeSink()
    report = run(source, sink, parse_flow_ids("1-10000"), concurrency=4)
    assert report.status == RunStatus.FAILED
    assert (report.error_message or "").startswith("stopped after 20 network failures in a row")
    assert 20 <= report.counts.failed == len(sink.written) < 30


def test_a_success_breaks_the_streak_of_network_failures() -> None:
    """Failures that are not in a row, or not on the network, never add up to 'unreachable'."""
    answers: dict[int, Answer] = {}
    for flow_id in range(1, 201):
        if flow_id % 10:
            answers[flow_id] = network_error(flow_id)
    report = run(FakeSource(answers=answers), FakeSink(), parse_flow_ids("1-200"), concurrency=1)
    assert report.status == RunStatus.PARTIAL
    assert report.counts == RunCounts(requested=200, created=20, failed=180)
