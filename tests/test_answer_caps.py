"""What a hostile or broken vendor can make flowsync read: one answer, and no more than its cap.

A details answer may decode to at most `FLOWSYNC_MAX_DETAILS_BYTES`, the listing to at most
`FLOWSYNC_MAX_LISTING_BYTES`, counted on the wire and after every Content-Encoding layer, and
the timeout bounds the whole exchange. These tests serve what no honest vendor would: answers
past the cap, decompression bombs (stacked ones too), a body that never ends, with a scripted
vendor, the simulator's faults, and a hostile server whose memory cost is measured; then a whole
run, on every database, to show that such an answer fails its own flow and nothing else.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import random
import re
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.app.settings import SETTINGS
from sync.errors import ApiError, PayloadError, TransientError
from sync.pipeline.loop import RunReport
from sync.simulator import Fault, SimulatorHandle
from sync.simulator.server import bomb
from sync.store.schema import flow_history, flows
from sync.vendor.body import size_text
from sync.vendor.client import DETAILS_CAP_SETTING, LISTING_CAP_SETTING, Backoff, FlowApiClient
from sync.vendor.payload import DETAILS_CAP_BYTES, LISTING_CAP_BYTES, ApiFlow
from sync.vocabulary import Trigger
from tests.conftest import settings_for
from tests.hostile_api import RawAnswer, hostile_server
from tests.tables import served_snapshot, stored_snapshot

BASE_URL = "https://api.vendor.test/otp"
CAP = 2**16  # the smallest cap a setting allows
FLOW = {"flowId": 7, "name": "Login OTP", "flow": [{"waitingTime": 30, "status": 1, "channel": "sms"}]}
ANSWER = json.dumps({"status": "0", "reason": "success", "data": FLOW}).encode()
LISTING = json.dumps({"status": "0", "reason": "success", "data": [FLOW]}).encode()
FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)


def padded(answer: bytes, size: int) -> bytes:
    """A valid answer of exactly `size` bytes: JSON allows any amount of trailing whitespace."""
    return answer + b" " * (size - len(answer))


class Served(httpx.AsyncByteStream):
    """A body handed out chunk by chunk (without end when `chunks` is None), counting what was taken."""

    def __init__(
        self, chunks: list[bytes] | None, *, pause_s: float = 0.0, filler: bytes = b" " * 4096
    ) -> None:
        self._chunks = chunks
        self._pause_s = pause_s
        self._filler = filler
        self.taken = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks if self._chunks is not None else itertools.repeat(self._filler):
            if self._pause_s:
                await asyncio.sleep(self._pause_s)
            self.taken += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


def pieces(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class Vendor:
    """A scripted vendor answering every request with `status` and `body`; it counts the requests."""

    def __init__(self, body: Served, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.body, self.status, self.headers = body, status, headers or {}
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(self.status, headers=self.headers, stream=self.body)

    def call(self, endpoint: str = "details", **options: Any) -> Any:
        settings: dict[str, Any] = {"retries": 2, "max_details_bytes": CAP, "max_listing_bytes": 4 * CAP}
        settings.update(options)

        async def call_api() -> Any:
            transport = httpx.MockTransport(self.handle)
            client = FlowApiClient(
                BASE_URL, "key", SecretStr("secret"), transport=transport, sleep=_no_wait, **settings
            )
            async with client:
                return await (client.flow_list() if endpoint == "list" else client.flow_details(7))

        return asyncio.run(call_api())

    def refusal(self, endpoint: str = "details", **options: Any) -> ApiError:
        with pytest.raises(ApiError) as caught:
            self.call(endpoint, **options)
        return caught.value


async def _no_wait(_: float) -> None:
    return None


def encoded(data: bytes, content_encoding: str) -> bytes:
    """`data` with the codings of a Content-Encoding value applied, in the order it lists them."""
    packers: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "identity": bytes,
    }
    for coding in content_encoding.split(","):
        data = packers[coding.strip()](data)
    return data


# --- the caps, against a scripted vendor ----------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "headers"),
    [
        pytest.param(pieces(padded(ANSWER, CAP + 1)), {}, id="valid JSON one byte past the cap"),
        pytest.param(pieces(gzip.compress(padded(ANSWER, CAP + 1))), {"Content-Encoding": "gzip"}, id="gzip"),
        pytest.param(pieces(bomb(2**30, 2)), {"Content-Encoding": "gzip, gzip"}, id="stacked gzip bomb"),
        pytest.param(None, {}, id="endless body"),
        pytest.param([b"{"], {"Content-Length": str(10 * 2**30)}, id="announced 10 GiB"),
    ],
)
def test_a_details_answer_past_its_cap_is_a_payload_error(
    chunks: list[bytes] | None, headers: dict[str, str]
) -> None:
    """Refused once the cap is passed, never retried, with a message that says the cap and its setting."""
    vendor = Vendor(Served(chunks), headers=headers)
    error = vendor.refusal()
    assert (type(error), error.kind, error.code) == (PayloadError, "payload", None)
    assert str(error) == "flow 7: the answer exceeds 64 KiB decoded (FLOWSYNC_MAX_DETAILS_BYTES)"
    assert vendor.requests == 1
    assert vendor.body.taken <= CAP + 2 * 4096, "reading stopped at the cap"
    assert vendor.body.closed


@pytest.mark.parametrize("content_encoding", ["identity", "gzip", "deflate, gzip"])
def test_an_answer_of_exactly_the_cap_is_read(content_encoding: str) -> None:
    """The cap is inclusive, and compression does not change what counts: the decoded size."""
    body = Served(pieces(encoded(padded(ANSWER, CAP), content_encoding)))
    flow = Vendor(body, headers={"Content-Encoding": content_encoding}).call()
    assert (flow.flow_id, flow.name) == (7, "Login OTP")


def test_each_endpoint_has_its_own_cap() -> None:
    """A listing may be larger than one flow's answer; past its own cap it is refused as the listing."""
    assert Vendor(Served(pieces(padded(LISTING, 3 * CAP)))).call("list").flow_ids == {7}
    error = Vendor(Served(pieces(padded(LISTING, 4 * CAP + 1)))).refusal("list")
    assert (type(error), error.flow_id) == (PayloadError, None)
    assert str(error) == "flow/list: the answer exceeds 256 KiB decoded (FLOWSYNC_MAX_LISTING_BYTES)"
    error = Vendor(Served(pieces(padded(ANSWER, 3 * CAP)))).refusal()
    assert str(error) == "flow 7: the answer exceeds 64 KiB decoded (FLOWSYNC_MAX_DETAILS_BYTES)"


def test_a_body_that_trickles_without_end_stops_at_the_timeout() -> None:
    """Slower than the cap, an endless body ends at the deadline of the whole exchange, and says so."""
    vendor = Vendor(Served(None, pause_s=0.01, filler=b" " * 100))
    error = vendor.refusal(timeout_s=0.3, retries=0)
    assert (type(error), error.kind) == (TransientError, "network")
    assert re.fullmatch(
        r"the answer did not end within 0\.3 s \([0-9.]+ (bytes|KiB) received\)", error.message
    )
    assert vendor.body.closed


def test_an_error_status_is_judged_without_reading_its_body() -> None:
    """A 503 is retried for its status whatever its body holds: a bomb behind it is never inflated."""
    vendor = Vendor(Served(pieces(bomb(2**30, 2))), status=503, headers={"Content-Encoding": "gzip, gzip"})
    error = vendor.refusal(retries=0)
    assert (type(error), error.code) == (TransientError, "503")
    assert vendor.body.taken == 0


def test_a_short_error_body_is_read_off_to_keep_its_connection() -> None:
    """A 503 page announced as short is read to its end (so its connection can be reused), never used."""
    page = b"<html>503 Service Unavailable</html>"
    vendor = Vendor(Served([page]), status=503, headers={"Content-Length": str(len(page))})
    error = vendor.refusal(retries=0)
    assert (type(error), error.code, vendor.body.taken) == (TransientError, "503", len(page))


def test_the_caps_are_the_settings_the_messages_name() -> None:
    """The client's defaults and the variables its messages name are the declared settings'."""
    assert SETTINGS["max_details_bytes"].env == DETAILS_CAP_SETTING
    assert SETTINGS["max_listing_bytes"].env == LISTING_CAP_SETTING
    assert SETTINGS["max_details_bytes"].default == DETAILS_CAP_BYTES == 8 * 2**20
    assert SETTINGS["max_listing_bytes"].default == LISTING_CAP_BYTES == 64 * 2**20


# --- over the wire: the simulator's faults --------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.bomb(2**28), id="gzip, gzip bomb"),
        pytest.param(Fault.bomb(2**28, layers=1), id="gzip bomb"),
        pytest.param(Fault.oversize(), id="500 MiB answer"),
        pytest.param(Fault.endless(), id="endless body"),
    ],
)
def test_the_simulators_huge_answers_are_refused_and_the_next_request_works(
    sim: SimulatorHandle, fault: Fault
) -> None:
    """Over real HTTP each is refused at the cap; the connection it poisoned is not reused."""

    async def scenario() -> tuple[ApiError, Any]:
        client = FlowApiClient(
            sim.base_url,
            sim.config.api_key,
            SecretStr(sim.config.api_secret),
            max_details_bytes=CAP,
            timeout_s=10,
        )
        async with client:
            with pytest.raises(ApiError) as caught:
                await client.flow_details(1)
            return caught.value, await client.flow_details(1)

    sim.faults.queue(1, fault)
    error, flow = asyncio.run(scenario())
    assert type(error) is PayloadError
    assert re.fullmatch(
        r"the answer exceeds 64 KiB (decoded|on the wire) \(FLOWSYNC_MAX_DETAILS_BYTES\)", error.message
    )
    assert flow == ApiFlow.model_validate(sim.catalog.get(1))
    assert sim.stats.faults == {fault.kind.value: 1}


def test_the_simulators_slow_endless_body_ends_at_the_timeout(sim: SimulatorHandle) -> None:
    """A body trickling slower than the cap is cut by the client's deadline, not by the server."""
    sim.faults.queue(1, Fault.endless(pause_s=0.2))

    async def scenario() -> None:
        client = FlowApiClient(
            sim.base_url, sim.config.api_key, SecretStr(sim.config.api_secret), timeout_s=0.5, retries=0
        )
        async with client:
            await client.flow_details(1)

    with pytest.raises(TransientError, match=r"the answer did not end within 0\.5 s \(.* received\)"):
        asyncio.run(scenario())


# --- memory: a hostile server sends what it likes -------------------------------------------------

MEMORY_CAP = 2**20


def chunked(data: bytes, size: int = 65536) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def spaces(total: int | None) -> Iterator[bytes]:
    """`total` bytes of a valid answer padded with spaces, or without end; never held at once."""
    yield ANSWER
    chunk = b" " * 65536
    sent = len(ANSWER)
    while total is None or sent < total:
        yield chunk
        sent += len(chunk)


HOSTILE = {
    "gzip bomb (1 GiB)": lambda: RawAnswer(chunked(bomb(2**30, 1)), {"Content-Encoding": "gzip"}),
    "stacked gzip bomb (2 GiB)": lambda: RawAnswer(
        chunked(bomb(2**31, 2)), {"Content-Encoding": "gzip, gzip"}
    ),
    "500 MB body": lambda: RawAnswer(spaces(500_000_000)),
    "endless body": lambda: RawAnswer(spaces(None)),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_memory_stays_bounded_whatever_the_server_sends(kind: str) -> None:
    """Peak memory while a hostile server answers stays within a few times the cap (1 MiB here)."""
    bomb(2**30, 1), bomb(2**31, 2)  # made before measuring: they are the server's, not flowsync's

    async def scenario(base_url: str) -> ApiError:
        client = FlowApiClient(
            base_url, "key", SecretStr("secret"), max_details_bytes=MEMORY_CAP, timeout_s=60, retries=0
        )
        async with client:
            with pytest.raises(ApiError) as caught:
                await client.flow_details(7)
            return caught.value

    with hostile_server(lambda path: HOSTILE[kind]()) as base_url:
        tracemalloc.start()
        try:
            error = asyncio.run(scenario(base_url))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert str(error) == "flow 7: the answer exceeds 1 MiB decoded (FLOWSYNC_MAX_DETAILS_BYTES)"
    assert peak < 4 * MEMORY_CAP, f"peak {size_text(peak)}"


# --- a whole run, on every database ---------------------------------------------------------------


def sync(settings: Any, engine: Engine) -> RunReport:
    return jobs.sync_once(settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST)


def errors(engine: Engine) -> list[tuple[int | None, str, str]]:
    with engine.connect() as connection:
        query = (
            sa.select(flow_history).where(flow_history.c.event == "error").order_by(flow_history.c.flow_id)
        )
        return [(row.flow_id, row.error_kind, row.error_message) for row in connection.execute(query)]


def test_an_answer_past_the_cap_fails_its_flow_only(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A bomb, an oversize answer and an endless body each fail their own flow, which keeps its state."""
    settings = settings_for(sim, database_url, "1-5", max_details_bytes=CAP)
    sync(settings, engine)
    before = {flow_id: stored_snapshot(engine, flow_id) for flow_id in (2, 3, 4)}
    sim.catalog.mutate(1.0, random.Random(3))  # every flow changes, so a refusal shows
    sim.faults.persist(2, Fault.bomb(2**28))
    sim.faults.persist(3, Fault.oversize(2**20))
    sim.faults.persist(4, Fault.endless())
    report = sync(settings, engine)
    assert (report.status, report.exit_code, report.counts.failed, report.counts.changed) == (
        "partial",
        1,
        3,
        2,
    )
    message = "the answer exceeds 64 KiB decoded (FLOWSYNC_MAX_DETAILS_BYTES)"
    assert errors(engine) == [(flow_id, "payload", message) for flow_id in (2, 3, 4)]
    for flow_id in (2, 3, 4):
        assert stored_snapshot(engine, flow_id) == before[flow_id]
    for flow_id in (1, 5):
        assert stored_snapshot(engine, flow_id) == served_snapshot(sim, flow_id)
    with engine.connect() as connection:
        states = dict(connection.execute(sa.select(flows.c.flow_id, flows.c.sync_state)).all())
    assert states == {1: "ok", 2: "error", 3: "error", 4: "error", 5: "ok"}


def test_a_listing_past_its_cap_fails_the_run_and_deletes_nothing(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """In `all` mode a listing past its cap is a run-level payload error: nothing is deleted."""
    settings = settings_for(sim, database_url, "all", max_listing_bytes=CAP)
    sync(settings, engine)
    sim.faults.persist("list", Fault.bomb(2**28))
    report = sync(settings, engine)
    assert (report.status, report.exit_code) == ("failed", 1)
    assert errors(engine) == [
        (None, "payload", "the answer exceeds 64 KiB decoded (FLOWSYNC_MAX_LISTING_BYTES)")
    ]
    with engine.connect() as connection:
        assert set(connection.scalars(sa.select(flows.c.sync_state))) == {"ok"}
