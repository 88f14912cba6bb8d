"""The vendor API client (`sync.vendor.client.FlowApiClient`), specified from the outside.

Two kinds of server answer it. A scripted vendor behind `httpx.MockTransport` pins
down signing, classification, retries and `Retry-After` exactly; it records every
request, and the client's injected `sleep` only records the delays it is asked for,
so nothing here waits for a backoff. The built-in simulator over loopback, reached
through the client's default transport, proves the same behaviour on the wire,
including connections that are reset, cut short or left hanging.

Every error provoked here is checked to name its flow or endpoint and to hold
neither the secret nor any `Sign` value that was sent.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import socket
import time
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sync.errors import (
    AccountError,
    ApiError,
    ClockSkewError,
    FlowRequestError,
    PayloadError,
    TransientError,
)
from sync.simulator import (
    Fault,
    FaultKind,
    SimulatorConfig,
    SimulatorHandle,
    running_simulator,
)
from sync.vendor.client import Backoff, FlowApiClient, Listing
from sync.vendor.payload import ApiFlow, ApiNode

BASE_URL = "https://api.vendor.test/otp"
KEY = "key-4711"
SECRET = "s3cr3t-Ω-never-sent"  # non-ASCII, so the signature's UTF-8 encoding is pinned down too
NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC, the scripted vendor's and the client's clock
FLOW_7 = {
    "flowId": 7,
    "name": "Login OTP 7",
    "flow": [
        {"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 0},
        {"waitingTime": 60, "status": 2, "channel": "call", "channelCut": 1},
    ],
}
EXPECTED_7 = ApiFlow(
    flow_id=7,
    name="Login OTP 7",
    nodes=(
        ApiNode(waiting_time=30, status=1, channel="sms", channel_cut=0),
        ApiNode(waiting_time=60, status=2, channel="call", channel_cut=1),
    ),
)

Answer = Callable[[httpx.Request], httpx.Response]


def md5_sign(key: str, secret: str, timestamp: int) -> str:
    """The vendor's documented signature, computed independently of `sync.vendor.signing`."""
    return hashlib.md5(f"{key}{secret}{timestamp}".encode(), usedforsecurity=False).hexdigest()


def http_date(unix_s: float) -> str:
    return formatdate(unix_s, usegmt=True)


# --- scripted answers -----------------------------------------------------------------------------


def respond(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
    return lambda request: httpx.Response(status, content=body, headers=headers)


def envelope(
    status: str | int | None = "0",
    data: Any = None,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    document: dict[str, Any] = {
        "status": status,
        "reason": reason or ("success" if status in ("0", 0) else "error"),
    }
    if status in ("0", 0):
        document["data"] = data
    return lambda request: httpx.Response(200, json=document, headers=headers)


def success(data: Any = FLOW_7) -> Answer:
    return envelope("0", data)


def network(error: type[httpx.TransportError]) -> Answer:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("the scripted network failed", request=request)

    return fail


class ScriptedApi:
    """A vendor that answers each request with the next scripted answer (the last one repeats).

    It records every request and every delay the client asks its `sleep` for.
    """

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers) or [success()]
        self.requests: list[httpx.Request] = []
        self.delays: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)

    async def sleep(self, delay_s: float) -> None:
        self.delays.append(delay_s)

    def client(self, **options: Any) -> FlowApiClient:
        settings: dict[str, Any] = {"retries": 2, "clock": lambda: NOW, **options}
        return FlowApiClient(
            BASE_URL,
            KEY,
            SecretStr(SECRET),
            transport=httpx.MockTransport(self.handle),
            sleep=self.sleep,
            **settings,
        )

    @property
    def signs(self) -> set[str]:
        return {request.headers["Sign"] for request in self.requests}

    @property
    def timestamps(self) -> list[int]:
        return [int(request.headers["Timestamp"]) for request in self.requests]

    def details(self, flow_id: int = 7, **options: Any) -> ApiFlow | None:
        async def fetch() -> ApiFlow | None:
            async with self.client(**options) as client:
                return await client.flow_details(flow_id)

        return asyncio.run(fetch())

    def listing(self, **options: Any) -> Listing:
        async def fetch() -> Listing:
            async with self.client(**options) as client:
                return await client.flow_list()

        return asyncio.run(fetch())

    def details_error(self, flow_id: int = 7, **options: Any) -> ApiError:
        with pytest.raises(ApiError) as caught:
            self.details(flow_id, **options)
        return checked(caught.value, SECRET, self.signs, f"flow {flow_id}: ")

    def listing_error(self, **options: Any) -> ApiError:
        with pytest.raises(ApiError) as caught:
            self.listing(**options)
        return checked(caught.value, SECRET, self.signs, "flow/list: ")


def checked(error: ApiError, secret: str, signs: set[str], prefix: str) -> ApiError:
    """The error names where it happened and leaks neither the secret nor a Sign, even in its chain."""
    text = "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)
    assert str(error).startswith(prefix), str(error)
    assert str(error) == prefix + error.message
    assert secret not in text
    assert not [sign for sign in signs if sign in text], "a Sign value leaked into the error"
    return error


# --- signing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clock_s", "offset_s", "timestamp"),
    [
        pytest.param(NOW, 0.0, 1_700_000_000, id="whole seconds"),
        pytest.param(NOW + 0.999, 0.0, 1_700_000_000, id="fraction truncated"),
        pytest.param(NOW, 600.0, 1_700_000_600, id="server ahead"),
        pytest.param(NOW, -90.5, 1_699_999_909, id="server behind"),
    ],
)
def test_every_request_is_signed(clock_s: float, offset_s: float, timestamp: int) -> None:
    """Api-Key, Timestamp (clock + offset, decimal seconds), Sign = md5(key+secret+timestamp), JSON type."""
    api = ScriptedApi(success(), success([FLOW_7]))

    async def fetch() -> None:
        async with api.client(clock=lambda: clock_s) as client:
            client.clock_offset_s = offset_s
            await client.flow_details(7)
            await client.flow_list()

    asyncio.run(fetch())
    assert [request.url.path for request in api.requests] == ["/otp/flow/details/7", "/otp/flow/list"]
    for request in api.requests:
        assert request.method == "GET"
        assert request.headers["Api-Key"] == KEY
        assert request.headers["Timestamp"] == str(timestamp)
        assert request.headers["Sign"] == md5_sign(KEY, SECRET, timestamp)
        assert request.headers["Content-Type"] == "application/json;charset=UTF-8"
        assert request.headers["Accept-Encoding"] == "gzip, deflate", "only what httpx decodes by itself"


def test_what_the_client_keeps_does_not_show_the_secret_or_a_sign() -> None:
    """The per-second signature cache and its scrubber print neither the Sign nor the secret."""
    api = ScriptedApi(success())

    async def kept() -> str:
        async with api.client() as client:
            await client.flow_details(7)
            return repr(vars(client))

    text = asyncio.run(kept())
    assert "_signature" in text
    assert SECRET not in text
    assert not any(sign in text for sign in api.signs)


def test_secret_is_never_sent() -> None:
    """The secret appears in no header, URL or body of any request, whatever the answer."""
    api = ScriptedApi(envelope("-18"), respond(503), success())
    assert api.details() == EXPECTED_7
    assert len(api.requests) == 3
    for request in api.requests:
        sent = [
            str(request.url),
            request.content.decode(),
            *(f"{k}: {v}" for k, v in request.headers.items()),
        ]
        assert not [part for part in sent if SECRET in part]


# --- success --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(success(), EXPECTED_7, id="documented shape"),
        pytest.param(
            envelope(0, {**FLOW_7, "flowId": "7", "extra": True}),
            EXPECTED_7,
            id="numbers as text, extra fields",
        ),
        pytest.param(success(None), None, id="data null means gone"),
        pytest.param(envelope("0"), None, id="data missing"),
    ],
)
def test_success_returns_the_flow(answer: Answer, expected: ApiFlow | None) -> None:
    """Status "0" answers the validated flow, or None when `data` is null (the flow no longer exists)."""
    api = ScriptedApi(answer)
    assert api.details() == expected
    assert len(api.requests) == 1


def test_answer_about_another_flow_is_a_payload_error() -> None:
    """A success whose `flowId` is not the one asked for is not trusted, and not retried."""
    api = ScriptedApi(success({**FLOW_7, "flowId": 8}))
    error = api.details_error(7)
    assert isinstance(error, PayloadError)
    assert (error.kind, error.flow_id, error.endpoint) == ("payload", 7, "flow/details/7")
    assert "8" in error.message
    assert len(api.requests) == 1


# --- classification -------------------------------------------------------------------------------

RETRIES = 2
CLASSIFICATION = [
    # answer, error type, kind, code, requests sent
    pytest.param(envelope("-1"), AccountError, "api", "-1", 1, id="-1 bad key or sign"),
    pytest.param(envelope("-2"), AccountError, "api", "-2", 1, id="-2 IP not allowed"),
    pytest.param(envelope(-1), AccountError, "api", "-1", 1, id="-1 as a number"),
    pytest.param(envelope("-22"), FlowRequestError, "api", "-22", 1, id="-22 parameter error"),
    pytest.param(envelope("-99"), FlowRequestError, "api", "-99", 1, id="unknown code"),
    pytest.param(envelope("-18"), TransientError, "api", "-18", RETRIES + 1, id="-18 system error"),
    pytest.param(respond(429), TransientError, "http", "429", RETRIES + 1, id="HTTP 429"),
    pytest.param(respond(500), TransientError, "http", "500", RETRIES + 1, id="HTTP 500"),
    pytest.param(respond(502), TransientError, "http", "502", RETRIES + 1, id="HTTP 502"),
    pytest.param(respond(503), TransientError, "http", "503", RETRIES + 1, id="HTTP 503"),
    pytest.param(respond(404), FlowRequestError, "http", "404", 1, id="HTTP 404"),
    pytest.param(respond(401), FlowRequestError, "http", "401", 1, id="HTTP 401"),
    pytest.param(
        respond(302, headers={"Location": "https://elsewhere.test/"}),
        FlowRequestError,
        "http",
        "302",
        1,
        id="redirect not followed",
    ),
    pytest.param(
        network(httpx.ConnectError), TransientError, "network", None, RETRIES + 1, id="connect error"
    ),
    pytest.param(network(httpx.ReadTimeout), TransientError, "network", None, RETRIES + 1, id="read timeout"),
    pytest.param(network(httpx.ReadError), TransientError, "network", None, RETRIES + 1, id="read error"),
    pytest.param(
        respond(200, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"}),
        PayloadError,
        "payload",
        None,
        1,
        id="HTML page",
    ),
    pytest.param(respond(200, b""), PayloadError, "payload", None, 1, id="empty body"),
    pytest.param(
        respond(200, b' {"status": "0", "da'), PayloadError, "payload", None, 1, id="truncated JSON"
    ),
    pytest.param(respond(200, b"[]"), PayloadError, "payload", None, 1, id="JSON array"),
    pytest.param(respond(200, b"\xff\xfe{}"), PayloadError, "payload", None, 1, id="not UTF-8"),
    pytest.param(
        respond(200, b'{"status": "0", "status": "-1"}'),
        PayloadError,
        "payload",
        None,
        1,
        id="duplicate keys",
    ),
    pytest.param(envelope(None), PayloadError, "payload", None, 1, id="status null"),
    pytest.param(respond(200, b'{"reason": "success"}'), PayloadError, "payload", None, 1, id="no status"),
    pytest.param(success([FLOW_7]), PayloadError, "payload", None, 1, id="data is a list"),
    pytest.param(success({"flowId": 7}), PayloadError, "payload", None, 1, id="flow without name"),
    pytest.param(
        success({**FLOW_7, "flow": [{"waitingTime": True, "status": 1, "channel": "sms"}]}),
        PayloadError,
        "payload",
        None,
        1,
        id="boolean for an integer",
    ),
]


@pytest.mark.parametrize(("answer", "error_type", "kind", "code", "requests"), CLASSIFICATION)
def test_failures_are_classified(
    answer: Answer, error_type: type[ApiError], kind: str, code: str | None, requests: int
) -> None:
    """Each failure raises its class with the `kind`/`code` stored in history; only transient ones retry."""
    api = ScriptedApi(answer)
    error = api.details_error(7, retries=RETRIES)
    assert type(error) is error_type
    assert (error.kind, error.code, error.flow_id, error.endpoint) == (kind, code, 7, "flow/details/7")
    assert len(api.requests) == requests
    assert len(api.delays) == requests - 1


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(envelope("-1"), "FLOWSYNC_API_KEY", id="-1 says which settings to check"),
        pytest.param(envelope("-2"), "allow this host", id="-2 says what to allow"),
        pytest.param(
            envelope("-22", reason="flow 7 does not exist"), "flow 7 does not exist", id="reason kept"
        ),
        pytest.param(respond(503), "HTTP 503", id="HTTP status"),
        pytest.param(respond(200, b"<html></html>"), "HTML", id="HTML named"),
        pytest.param(respond(200, b""), "empty body", id="empty named"),
    ],
)
def test_error_messages_say_what_happened(answer: Answer, words: str) -> None:
    """The message gives an operator the cause in words, after the flow it concerns."""
    error = ScriptedApi(answer).details_error(7, retries=0)
    assert words in str(error)


def test_reason_is_shortened() -> None:
    """A long `reason` is cut so an error message stays one readable line."""
    error = ScriptedApi(envelope("-22", reason="x" * 5000)).details_error(7)
    assert len(error.message) < 300


@pytest.mark.parametrize(
    "failures",
    [
        pytest.param([envelope("-18"), envelope("-18")], id="-18 twice"),
        pytest.param([respond(503), respond(429)], id="HTTP 503 then 429"),
        pytest.param([network(httpx.ConnectError), network(httpx.ReadTimeout)], id="network"),
        pytest.param([respond(502), envelope("-18")], id="HTTP 502 then -18"),
    ],
)
def test_transient_failures_then_success_return_the_flow(failures: list[Answer]) -> None:
    """Transient failures within the retry budget are invisible to the caller."""
    api = ScriptedApi(*failures, success())
    assert api.details(retries=2) == EXPECTED_7
    assert len(api.requests) == 3
    assert len(api.delays) == 2


def test_no_retries_means_one_request() -> None:
    """`retries=0` sends a transient failure straight to the caller."""
    api = ScriptedApi(respond(503), success())
    error = api.details_error(retries=0)
    assert isinstance(error, TransientError)
    assert (len(api.requests), api.delays) == (1, [])


class NotGzip(httpx.AsyncByteStream):
    """A body that claims gzip but is not, read by the client as it would read a real one."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"status": "0"}'


def test_undecodable_content_encoding_is_a_payload_error() -> None:
    """A body whose Content-Encoding lies cannot be read: a PayloadError, not an escaped httpx error."""
    api = ScriptedApi(
        lambda request: httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=NotGzip())
    )
    error = api.details_error()
    assert (type(error), error.kind) == (PayloadError, "payload")
    assert len(api.requests) == 1


# --- backoff and Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "backoff",
    [
        pytest.param(Backoff(initial_s=0.5, max_s=3.0), id="capped at 3 s"),
        pytest.param(Backoff(initial_s=1.0, max_s=1000.0), id="uncapped"),
        pytest.param(Backoff(initial_s=0.1, max_s=0.25), id="cap below the second step"),
    ],
)
def test_backoff_grows_exponentially_with_jitter_up_to_max(backoff: Backoff) -> None:
    """Attempt n waits initial·2^(n-1) plus up to `initial_s` of jitter, never more than `max_s`."""
    api = ScriptedApi(envelope("-18"))
    api.details_error(retries=6, backoff=backoff)
    assert len(api.delays) == 6
    for attempt, delay in enumerate(api.delays, start=1):
        base = backoff.initial_s * 2 ** (attempt - 1)
        assert min(base, backoff.max_s) <= delay <= min(base + backoff.initial_s, backoff.max_s)
    assert api.delays == sorted(api.delays)


def test_backoff_has_jitter() -> None:
    """The delays are randomised, so many clients retrying together spread out."""
    api = ScriptedApi(envelope("-18"))
    api.details_error(retries=8, backoff=Backoff(initial_s=1.0, max_s=10_000.0))
    jitters = [delay - 2 ** (attempt - 1) for attempt, delay in enumerate(api.delays, start=1)]
    assert all(0.0 <= jitter <= 1.0 for jitter in jitters)
    assert len(set(jitters)) > 1


DATE = http_date(NOW)
CLIENT_NOW = NOW + 3600  # the client's clock an hour off, so only the server's Date can explain a delay
RETRY_AFTER = [
    # headers of a 503, Backoff, expected first delay
    pytest.param({"Retry-After": "2"}, Backoff(), 2.0, id="seconds"),
    pytest.param({"Retry-After": " 7 "}, Backoff(), 7.0, id="seconds with spaces"),
    pytest.param({"Retry-After": "0"}, Backoff(), 0.0, id="zero"),
    pytest.param({"Retry-After": http_date(NOW + 30), "Date": DATE}, Backoff(), 30.0, id="HTTP-date"),
    pytest.param(
        {"Retry-After": http_date(NOW + 600 + 45), "Date": http_date(NOW + 600)},
        Backoff(),
        45.0,
        id="HTTP-date read against the server's Date, not our clock",
    ),
    pytest.param(
        {"Retry-After": http_date(CLIENT_NOW + 12)}, Backoff(), 12.0, id="HTTP-date, no Date: our clock"
    ),
    pytest.param({"Retry-After": http_date(NOW - 60), "Date": DATE}, Backoff(), 0.0, id="HTTP-date past"),
    pytest.param({"Retry-After": "86400"}, Backoff(retry_after_cap_s=60.0), 60.0, id="huge seconds capped"),
    pytest.param({"Retry-After": "9" * 400}, Backoff(retry_after_cap_s=5.0), 5.0, id="absurd seconds capped"),
    pytest.param(
        {"Retry-After": http_date(NOW + 86400), "Date": DATE},
        Backoff(retry_after_cap_s=120.0),
        120.0,
        id="far HTTP-date capped",
    ),
]


@pytest.mark.parametrize(("headers", "backoff", "delay"), RETRY_AFTER)
def test_retry_after_is_honoured_up_to_the_cap(
    headers: dict[str, str], backoff: Backoff, delay: float
) -> None:
    """`Retry-After` (seconds or HTTP-date) replaces the backoff, capped at `retry_after_cap_s`."""
    api = ScriptedApi(respond(503, headers=headers), success())
    assert api.details(backoff=backoff, clock=lambda: CLIENT_NOW) == EXPECTED_7
    assert api.delays == [pytest.approx(delay)]


@pytest.mark.parametrize(
    "value",
    ["soon", "-5", "1.5", "Tue, 14 Nov 2023 22:13:20", ""],
    ids=["word", "negative", "fraction", "date without zone", "empty"],
)
def test_unreadable_retry_after_falls_back_to_backoff(value: str) -> None:
    """A `Retry-After` that is neither whole seconds nor an HTTP-date is ignored for the usual backoff."""
    api = ScriptedApi(respond(429, headers={"Retry-After": value}), success())
    assert api.details(backoff=Backoff(initial_s=4.0, max_s=100.0)) == EXPECTED_7
    assert len(api.delays) == 1
    assert 4.0 <= api.delays[0] <= 8.0


def test_non_ascii_digit_retry_after_falls_back_to_backoff() -> None:
    """A `Retry-After` of a Unicode digit (here Latin-1 '²') is unreadable, not a crash."""
    api = ScriptedApi(lambda request: httpx.Response(503, headers=[(b"Retry-After", b"\xb2")]), success())
    assert api.details(backoff=Backoff(initial_s=1.0)) == EXPECTED_7
    assert 1.0 <= api.delays[0] <= 2.0


def test_retry_after_is_kept_on_the_final_error() -> None:
    """When retries run out, the error still says how long the server asked to wait."""
    api = ScriptedApi(respond(429, headers={"Retry-After": "9"}))
    error = api.details_error(retries=1)
    assert isinstance(error, TransientError)
    assert error.retry_after_s == 9.0
    assert api.delays == [9.0]


# --- -16: the clock ------------------------------------------------------------------------------


class SkewedServer:
    """A scripted vendor whose clock runs `skew_s` ahead and that answers `-16` outside a 60 s window."""

    def __init__(self, skew_s: float) -> None:
        self.server_now = NOW + skew_s

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if abs(int(request.headers["Timestamp"]) - self.server_now) > 60:
            return envelope("-16", headers={"Date": http_date(self.server_now)})(request)
        return success({**FLOW_7, "flowId": int(request.url.path.rsplit("/", 1)[-1])})(request)


def test_minus_16_resigns_once_with_the_server_clock_and_keeps_the_offset() -> None:
    """After `-16` the retry carries the server's time from `Date`; later requests keep that offset."""
    api = ScriptedApi(SkewedServer(600))

    async def fetch_twice() -> float:
        async with api.client() as client:
            assert (await client.flow_details(7)) == EXPECTED_7
            assert (await client.flow_details(8)) is not None
            return client.clock_offset_s

    assert asyncio.run(fetch_twice()) == 600.0
    assert api.timestamps == [int(NOW), int(NOW) + 600, int(NOW) + 600]
    assert [request.headers["Sign"] for request in api.requests][1:] == [
        md5_sign(KEY, SECRET, int(NOW) + 600)
    ] * 2
    assert api.delays == []


@pytest.mark.parametrize(
    ("answers", "requests"),
    [
        pytest.param([envelope("-16", headers={"Date": DATE})], 2, id="-16 again after re-signing"),
        pytest.param([envelope("-16")], 1, id="no Date header"),
        pytest.param([envelope("-16", headers={"Date": "yesterday"})], 1, id="unreadable Date"),
        pytest.param(
            [envelope("-16", headers={"Date": "Tue, 14 Nov 2023 22:13:20 -0000"})], 1, id="naive Date"
        ),
    ],
)
def test_minus_16_that_cannot_be_corrected_is_a_clock_skew_error(
    answers: list[Answer], requests: int
) -> None:
    """A second `-16`, or one without a usable `Date`, raises `ClockSkewError` and is not retried."""
    api = ScriptedApi(*answers)
    error = api.details_error(retries=3)
    assert type(error) is ClockSkewError
    assert (error.kind, error.code) == ("api", "-16")
    assert len(api.requests) == requests
    assert api.delays == []


def test_minus_16_then_transient_failure_is_retried() -> None:
    """A transient failure of the re-signed request is retried like any other, keeping the offset."""
    skewed = SkewedServer(-300)
    api = ScriptedApi(skewed, envelope("-18"), skewed)
    assert api.details() == EXPECTED_7
    assert api.timestamps == [int(NOW), int(NOW) - 300, int(NOW) - 300]


def test_clock_skew_also_on_the_list() -> None:
    """`/flow/list` is re-signed after `-16` exactly like a flow's details."""
    api = ScriptedApi(envelope("-16", headers={"Date": http_date(NOW + 120)}), success([FLOW_7]))
    assert api.listing().flows == [EXPECTED_7]
    assert api.timestamps == [int(NOW), int(NOW) + 120]


# --- /flow/list ----------------------------------------------------------------------------------


def flow(flow_id: Any, **fields: Any) -> dict[str, Any]:
    return {**FLOW_7, "flowId": flow_id, "name": f"Flow {flow_id}", **fields}


def test_listing_returns_every_flow() -> None:
    """A clean listing gives every flow, validated, in order, and nothing invalid."""
    api = ScriptedApi(success([flow(1), flow(2), flow("3", extra="ignored")]))
    listing = api.listing()
    assert [f.flow_id for f in listing.flows] == [1, 2, 3]
    assert listing.invalid == []
    assert listing.flow_ids == {1, 2, 3}
    assert api.requests[0].url.path == "/otp/flow/list"


def test_empty_listing_is_an_account_without_flows() -> None:
    """`data: []` is a valid answer: the account has no flows."""
    listing = ScriptedApi(success([])).listing()
    assert (len(listing), listing.flows, listing.invalid, listing.flow_ids) == (0, [], [], set())


@pytest.mark.parametrize(
    "bad_item",
    [
        pytest.param(flow(9, name=5), id="name not a string"),
        pytest.param(flow(9, flow=None), id="nodes null"),
        pytest.param(flow(9, flow=[{"waitingTime": "soon", "status": 1, "channel": "sms"}]), id="bad node"),
        pytest.param({"flowId": "9"}, id="only an ID"),
    ],
)
def test_listed_flow_with_invalid_content_is_set_aside(bad_item: dict[str, Any]) -> None:
    """An item whose content is bad but whose `flowId` is readable is reported in `invalid`, the rest kept."""
    api = ScriptedApi(success([flow(1), bad_item, flow(2)]))
    listing = api.listing()
    assert [f.flow_id for f in listing.flows] == [1, 2]
    [error] = listing.invalid
    assert isinstance(error, PayloadError)
    assert (error.flow_id, error.endpoint, error.kind) == (9, "flow/list", "payload")
    checked(error, SECRET, api.signs, "flow 9: ")
    assert listing.flow_ids == {1, 2, 9}, "a listed flow with bad content still exists"


@pytest.mark.parametrize(
    "flow_id",
    [0, -5, "0", "-5", 2**63, 10**30, -(2**63) - 1, 0.0],
    ids=["0", "-5", "'0'", "'-5'", "2**63", "10**30", "-(2**63)-1", "0.0"],
)
def test_a_listed_flow_id_outside_the_rule_fails_that_item_only(flow_id: Any) -> None:
    """A listed integer flowId that no flow can have (`sync.core.selection`'s rule) is that item's
    payload error, with no flow ID of its own; the other items are kept."""
    api = ScriptedApi(success([flow(1), flow(flow_id), flow(2)]))
    listing = api.listing()
    assert [f.flow_id for f in listing.flows] == [1, 2]
    [error] = listing.invalid
    assert isinstance(error, PayloadError)
    assert (error.flow_id, error.endpoint, error.kind) == (None, "flow/list", "payload")
    assert error.message.startswith("item 1: flowId ")
    assert "not a flow ID (flow IDs run from 1 to 9223372036854775807)" in error.message
    checked(error, SECRET, api.signs, "flow/list: ")
    assert listing.flow_ids == {1, 2}
    assert len(listing) == 3, "the item still counts, as one failed result"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param([flow(1), {"name": "no ID"}], "item 1 has no readable flowId", id="no flowId"),
        pytest.param([flow(1), flow("abc")], "item 1 has no readable flowId", id="flowId not a number"),
        pytest.param([flow(True)], "item 0 has no readable flowId", id="flowId boolean"),
        pytest.param([flow(1), "flow 2"], "item 1 has no readable flowId", id="item not an object"),
        pytest.param([flow(1), flow(2), flow("1")], "flow 1 is listed twice", id="duplicate flowId"),
        pytest.param(None, "not a list", id="data null"),
        pytest.param(flow(1), "not a list", id="data an object"),
        pytest.param("[]", "not a list", id="data a string"),
    ],
)
def test_listing_that_cannot_be_trusted_fails_as_a_whole(data: Any, words: str) -> None:
    """Without a readable, unique flowId for every item nothing may be marked deleted, so all fails."""
    api = ScriptedApi(success(data))
    error = api.listing_error()
    assert type(error) is PayloadError
    assert (error.flow_id, error.endpoint, error.kind) == (None, "flow/list", "payload")
    assert words in error.message
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("answer", "error_type", "requests"),
    [
        pytest.param(envelope("-1"), AccountError, 1, id="-1"),
        pytest.param(respond(503), TransientError, RETRIES + 1, id="HTTP 503"),
        pytest.param(respond(200, b"<html>"), PayloadError, 1, id="HTML"),
    ],
)
def test_listing_failures_name_the_endpoint(
    answer: Answer, error_type: type[ApiError], requests: int
) -> None:
    """Errors of `/flow/list` are classified like any other and say `flow/list:`."""
    api = ScriptedApi(answer)
    error = api.listing_error(retries=RETRIES)
    assert type(error) is error_type
    assert len(api.requests) == requests


# --- discretion -----------------------------------------------------------------------------------


def test_reason_echoing_the_sign_does_not_leak_it() -> None:
    """A vendor or gateway that echoes the request's Sign in `reason` does not get it into the error."""

    def echo(request: httpx.Request) -> httpx.Response:
        return envelope("-1", reason=f"invalid sign {request.headers['Sign']}")(request)

    api = ScriptedApi(echo)
    with pytest.raises(AccountError) as caught:
        api.details()
    checked(caught.value, SECRET, api.signs, "flow 7: ")


# --- over the wire: the simulator on loopback ------------------------------------------------------


def wire_signs(key: str, secret: str, offset_s: float = 0.0) -> set[str]:
    """Every Sign the client could have sent within a quarter hour of now, by our clock or the server's."""
    now = int(time.time())
    seconds = {*range(now - 900, now + 900), *range(now - 900 + int(offset_s), now + 900 + int(offset_s))}
    return {md5_sign(key, secret, t) for t in seconds}


def sim_signs(config: SimulatorConfig) -> set[str]:
    return wire_signs(config.api_key, config.api_secret, config.clock_offset_s)


class Sleeps:
    """An injected `sleep` that records what it is asked and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)


def wire_client(
    sim: SimulatorHandle, sleep: Callable[[float], Awaitable[None]], **options: Any
) -> FlowApiClient:
    settings: dict[str, Any] = {"timeout_s": 5.0, "retries": 2, "sleep": sleep, **options}
    return FlowApiClient(sim.base_url, sim.config.api_key, SecretStr(sim.config.api_secret), **settings)


def on_wire(sim: SimulatorHandle, call: str = "details", flow_id: int = 1, **options: Any) -> Any:
    async def fetch() -> Any:
        async with wire_client(sim, Sleeps(), **options) as client:
            return await (client.flow_list() if call == "list" else client.flow_details(flow_id))

    return asyncio.run(fetch())


def wire_error(sim: SimulatorHandle, flow_id: int = 1, **options: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        on_wire(sim, flow_id=flow_id, **options)
    return checked(caught.value, sim.config.api_secret, sim_signs(sim.config), f"flow {flow_id}: ")


def test_wire_details_match_the_catalog(sim: SimulatorHandle) -> None:
    """Signed by the client over real HTTP, the simulator accepts and serves the flow as stored."""
    flow_1 = on_wire(sim, flow_id=1)
    assert flow_1 == ApiFlow.model_validate(sim.catalog.get(1))
    assert sim.stats.responses == {"0": 1}


def test_wire_listing_has_every_flow(sim: SimulatorHandle) -> None:
    """`/flow/list` over the wire gives all 20 flows of the simulated account."""
    listing = on_wire(sim, "list")
    assert listing.flow_ids == set(range(1, 21))
    assert listing.flows == [ApiFlow.model_validate(item) for item in sim.catalog.listing()]
    assert listing.invalid == []


def test_wire_requests_share_connections(sim: SimulatorHandle) -> None:
    """Many concurrent requests through one client all succeed over the shared pool."""

    async def fetch_all() -> list[ApiFlow | None]:
        async with wire_client(sim, Sleeps(), max_connections=4) as client:
            return await asyncio.gather(*(client.flow_details(i) for i in range(1, 21)))

    flows = asyncio.run(fetch_all())
    assert [f.flow_id for f in flows if f is not None] == list(range(1, 21))
    assert sim.stats.requests == {"details": 20}


WIRE_FAULTS = [
    # faults queued for flow 1, error type, kind, code, requests the simulator saw
    pytest.param([Fault.api("-2")], AccountError, "api", "-2", 1, id="-2"),
    pytest.param([Fault.api("-22")], FlowRequestError, "api", "-22", 1, id="-22"),
    pytest.param([Fault.api("-18")] * 3, TransientError, "api", "-18", 3, id="-18 thrice"),
    pytest.param([Fault.http(503)] * 3, TransientError, "http", "503", 3, id="HTTP 503 thrice"),
    pytest.param([Fault.http(404)], FlowRequestError, "http", "404", 1, id="HTTP 404"),
    pytest.param([Fault.html(502)] * 3, TransientError, "http", "502", 3, id="HTML 502 thrice"),
    pytest.param(
        [Fault(FaultKind.CLOSE_MID_BODY)] * 3, TransientError, "network", None, 3, id="closed mid-body thrice"
    ),
    pytest.param([Fault(FaultKind.TRUNCATED)], PayloadError, "payload", None, 1, id="truncated"),
    pytest.param([Fault(FaultKind.EMPTY_BODY)], PayloadError, "payload", None, 1, id="empty body"),
    pytest.param([Fault(FaultKind.NOT_OBJECT)], PayloadError, "payload", None, 1, id="JSON array"),
    pytest.param([Fault.html()], PayloadError, "payload", None, 1, id="HTML 200"),
    pytest.param([Fault(FaultKind.WRONG_ID)], PayloadError, "payload", None, 1, id="another flow"),
]


@pytest.mark.parametrize(("faults", "error_type", "kind", "code", "requests"), WIRE_FAULTS)
def test_wire_faults_are_classified(
    sim: SimulatorHandle,
    faults: list[Fault],
    error_type: type[ApiError],
    kind: str,
    code: str | None,
    requests: int,
) -> None:
    """What the simulator does wrong reaches the caller as the documented error after the documented tries."""
    sim.faults.queue(1, *faults)
    error = wire_error(sim, retries=2)
    assert type(error) is error_type
    assert (error.kind, error.code, error.flow_id) == (kind, code, 1)
    assert sim.stats.requests == {"details": requests}


def test_wire_transient_faults_then_success(sim: SimulatorHandle) -> None:
    """A 429, a cut body, a -18 and a gateway's 502 page in a row are ridden out; the fifth request wins."""
    sim.faults.queue(
        1,
        Fault.http(429, retry_after=0),
        Fault(FaultKind.CLOSE_MID_BODY),
        Fault.api("-18"),
        Fault.html(502),
    )
    sleeps = Sleeps()

    async def fetch() -> ApiFlow | None:
        async with wire_client(sim, sleeps, retries=4) as client:
            return await client.flow_details(1)

    assert asyncio.run(fetch()) == ApiFlow.model_validate(sim.catalog.get(1))
    assert sim.stats.requests == {"details": 5}
    assert len(sleeps.delays) == 4
    assert sleeps.delays[0] == 0.0, "Retry-After: 0 is honoured"


def test_wire_reset_is_a_network_error(sim: SimulatorHandle) -> None:
    """A connection aborted before any answer is a transient network error once the retries run out."""
    sim.faults.persist(1, Fault(FaultKind.RESET))
    sleeps = Sleeps()

    async def fetch() -> int:
        async with wire_client(sim, sleeps, retries=2) as client:
            with pytest.raises(TransientError) as caught:
                await client.flow_details(1)
            checked(caught.value, sim.config.api_secret, sim_signs(sim.config), "flow 1: ")
            assert (caught.value.kind, caught.value.code) == ("network", None)
            assert "connection failed" in caught.value.message
            return client.requests_sent

    assert asyncio.run(fetch()) == 3
    assert len(sleeps.delays) == 2


def test_wire_resets_are_retried_then_recorded_as_network_errors(sim: SimulatorHandle) -> None:
    """With `retries=2`, resets every time end as a network error after three attempts.

    aiohttp's pool resends an idempotent request once when a kept-alive connection turns
    out to be closed, so the vendor may see up to two requests per attempt (documented).
    """
    sim.faults.persist(1, Fault(FaultKind.RESET))
    error = wire_error(sim, retries=2)
    assert (type(error), error.kind) == (TransientError, "network")
    assert 3 <= sim.stats.requests["details"] <= 6


def test_wire_null_data_means_gone(sim: SimulatorHandle) -> None:
    """`data: null` over the wire answers None."""
    sim.faults.queue(1, Fault(FaultKind.NULL_DATA))
    assert on_wire(sim, flow_id=1) is None


def test_wire_unknown_flow_is_a_request_error(sim: SimulatorHandle) -> None:
    """A flow the account does not have answers `-22`, for that flow only."""
    error = wire_error(sim, flow_id=999)
    assert (type(error), error.code) == (FlowRequestError, "-22")


def test_wire_wrong_secret_is_an_account_error(sim: SimulatorHandle) -> None:
    """A secret the simulator does not know is refused with `-1` and not retried."""

    async def fetch() -> None:
        client = FlowApiClient(sim.base_url, sim.config.api_key, SecretStr("not-the-secret"), sleep=Sleeps())
        async with client:
            await client.flow_details(1)

    with pytest.raises(AccountError) as caught:
        asyncio.run(fetch())
    checked(caught.value, "not-the-secret", wire_signs(sim.config.api_key, "not-the-secret"), "flow 1: ")
    assert caught.value.code == "-1"
    assert sim.stats.requests == {"details": 1}


def test_wire_account_error_on_the_list(sim: SimulatorHandle) -> None:
    """An account-wide `-2` on `/flow/list` is an `AccountError` naming the endpoint, after one request."""
    sim.faults.set_account(Fault.api("-2"))
    with pytest.raises(AccountError) as caught:
        on_wire(sim, "list")
    checked(caught.value, sim.config.api_secret, sim_signs(sim.config), "flow/list: ")
    assert sim.stats.requests == {"list": 1}


def test_wire_hung_request_times_out(sim: SimulatorHandle) -> None:
    """A request left hanging ends after `timeout_s` as a network error, and is retried."""
    sim.faults.queue(1, Fault.hang(), Fault.hang())
    sleeps = Sleeps()

    async def fetch() -> None:
        async with wire_client(sim, sleeps, timeout_s=0.3, retries=1) as client:
            await client.flow_details(1)

    with pytest.raises(ApiError) as caught:
        asyncio.run(fetch())
    error = checked(caught.value, sim.config.api_secret, sim_signs(sim.config), "flow 1: ")
    assert (type(error), error.kind, error.code) == (TransientError, "network", None)
    assert "no answer within 0.3 s" in error.message
    # The client's own record of its retry: on a loaded machine the second attempt may time out
    # before the server has even read it, so the server's count is not the measure.
    assert len(sleeps.delays) == 1
    assert sim.stats.requests["details"] >= 1


def test_wire_hang_then_success(sim: SimulatorHandle) -> None:
    """After a timed-out attempt the retry gets the flow."""
    sim.faults.queue(1, Fault.hang())
    # The timeout must also let the retry's real answer through on a loaded machine: generous.
    assert on_wire(sim, flow_id=1, timeout_s=2.0) == ApiFlow.model_validate(sim.catalog.get(1))


def free_port() -> int:
    """A loopback port nothing listens on (the moment after this returns)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_wire_connection_refused_is_a_network_error() -> None:
    """A vendor that cannot be reached is a transient network error, retried, naming the flow."""
    sleeps = Sleeps()

    async def fetch() -> None:
        async with FlowApiClient(
            f"http://127.0.0.1:{free_port()}/otp", "key", SecretStr(SECRET), retries=2, sleep=sleeps
        ) as client:
            await client.flow_details(3)

    with pytest.raises(TransientError) as caught:
        asyncio.run(fetch())
    checked(caught.value, SECRET, set(), "flow 3: ")
    assert (caught.value.kind, caught.value.code) == ("network", None)
    assert "connection failed" in caught.value.message
    assert len(sleeps.delays) == 2


@asynccontextmanager
async def raw_http_server(reply: bytes) -> AsyncIterator[str]:
    """A loopback server that answers every request with `reply`, byte for byte, then hangs up."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/otp"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"garbage\r\n\r\n", id="no status line"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n{}", id="bad Content-Length"),
    ],
)
def test_wire_unparsable_http_is_a_network_error(reply: bytes) -> None:
    """Bytes that are not HTTP (a broken proxy, a wrong port) are a transient network error."""
    sleeps = Sleeps()

    async def fetch() -> None:
        async with raw_http_server(reply) as base_url:
            client = FlowApiClient(base_url, "key", SecretStr(SECRET), retries=1, sleep=sleeps)
            async with client:
                await client.flow_details(5)

    with pytest.raises(ApiError) as caught:
        asyncio.run(fetch())
    checked(caught.value, SECRET, set(), "flow 5: ")
    assert (type(caught.value), caught.value.kind) == (TransientError, "network")
    assert len(sleeps.delays) == 1


def test_wire_minus_16_is_corrected_from_the_server_date(sim: SimulatorHandle) -> None:
    """A queued `-16` is answered by re-signing once, from the simulator's `Date`, then success."""
    sim.faults.queue(1, Fault.api("-16"))
    assert on_wire(sim, flow_id=1) is not None
    assert sim.stats.responses == {"-16": 1, "0": 1}


def test_wire_server_clock_ten_minutes_ahead() -> None:
    """Against a server 600 s ahead, the first request fails with `-16`, every later one is signed right."""
    config = SimulatorConfig(flow_count=3, clock_offset_s=600)

    async def fetch(sim: SimulatorHandle) -> float:
        async with wire_client(sim, Sleeps()) as client:
            for flow_id in (1, 2, 3):
                assert (await client.flow_details(flow_id)) is not None
            assert (await client.flow_list()).flow_ids == {1, 2, 3}
            return client.clock_offset_s

    with running_simulator(config) as sim:
        offset_s = asyncio.run(fetch(sim))
        assert sim.stats.responses == {"-16": 1, "0": 4}
    assert 598 <= offset_s <= 601


def test_wire_clock_skew_that_persists(sim: SimulatorHandle) -> None:
    """A server answering `-16` even to the corrected timestamp gives `ClockSkewError` after two requests."""
    sim.faults.queue(1, Fault.api("-16"), Fault.api("-16"))
    error = wire_error(sim, retries=3)
    assert (type(error), error.code) == (ClockSkewError, "-16")
    assert sim.stats.requests == {"details": 2}


# --- closing --------------------------------------------------------------------------------------


@asynccontextmanager
async def no_resource_warnings() -> AsyncIterator[None]:
    """Fail if anything left unclosed warns when collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_client_closes_cleanly_after_use(sim: SimulatorHandle) -> None:
    """Leaving `async with` closes the pool: nothing unclosed, even after a reset and a timeout."""
    sim.faults.persist(1, Fault(FaultKind.RESET))
    sim.faults.queue(2, Fault.hang())

    async def use() -> None:
        async with no_resource_warnings():
            # Generous: the hang waits it out, and the real answers must fit in it under load.
            async with wire_client(sim, Sleeps(), timeout_s=2.0, retries=0) as client:
                await client.flow_list()
                for flow_id in (1, 2):
                    with pytest.raises(TransientError):
                        await client.flow_details(flow_id)
                assert await client.flow_details(3) is not None
            del client

    asyncio.run(use())


def test_client_closes_cleanly_unused() -> None:
    """A client opened and closed without a request leaves nothing behind."""

    async def use() -> None:
        async with no_resource_warnings(), FlowApiClient("http://127.0.0.1:9/otp", "key", SecretStr(SECRET)):
            pass

    asyncio.run(use())


def test_closed_client_sends_nothing(sim: SimulatorHandle) -> None:
    """After closing, the client refuses to send rather than reopening a pool."""

    async def use() -> None:
        client = wire_client(sim, Sleeps())
        await client.aclose()
        with pytest.raises(RuntimeError):
            await client.flow_details(1)

    asyncio.run(use())
    assert sim.stats.requests == {}


@pytest.mark.parametrize(
    "body",
    [
        '{{"status": ["{sign}"]}}',
        '{{"status": "0", "data": {{"flowId": 1, "name": "x", "flow": [{{"waitingTime": "{sign}"}}]}}}}',
        '{{"status": "-22", "reason": "bad sign {sign}"}}',
    ],
)
def test_an_echoed_sign_never_reaches_an_error_message(body: str) -> None:
    """A body that repeats the request's Sign produces an error that does not contain it."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Sign"])
        return httpx.Response(200, content=body.format(sign=request.headers["Sign"]).encode())

    async def fetch() -> ApiError:
        client = FlowApiClient(
            "https://api.example.test/otp", "key", SecretStr("s3cr3t"), transport=httpx.MockTransport(handler)
        )
        async with client:
            with pytest.raises(ApiError) as caught:
                await client.flow_details(1)
            return caught.value

    error = asyncio.run(fetch())
    assert sent
    assert sent[0] not in str(error)
    assert "s3cr3t" not in str(error)


# --- the request log ------------------------------------------------------------------------------


def test_a_request_that_gets_no_answer_is_logged_with_what_went_wrong(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG each attempt is one record; one without an answer says so, by the error's class only."""
    api = ScriptedApi(network(httpx.ReadError), success())
    with caplog.at_level(logging.DEBUG, logger="sync.vendor.client"):
        assert api.details() == EXPECTED_7
    records = [r for r in caplog.records if r.name == "sync.vendor.client"]
    assert [r.getMessage().split(" (attempt")[0] for r in records] == [
        "GET /otp/flow/details/7 no answer (ReadError)",
        "GET /otp/flow/details/7 200",
    ]
    assert [(r.method, r.path, r.status, r.attempt) for r in records] == [  # type: ignore[attr-defined]
        ("GET", "/otp/flow/details/7", None, 1),
        ("GET", "/otp/flow/details/7", 200, 2),
    ]
    assert all(r.duration_ms >= 0 for r in records)  # type: ignore[attr-defined]
    assert "the scripted network failed" not in caplog.text
    assert SECRET not in caplog.text
    assert not [sign for sign in api.signs if sign in caplog.text]
