"""The vendor API client: signed requests over one shared connection pool.

Each answer is classified into the tree in `sync.errors`. Transient failures
(`-18`, HTTP 429/5xx, network errors, timeouts) are retried with exponential
backoff and jitter, honouring a `Retry-After` header up to a cap. A `-16` (timestamp
expired) re-signs once with the clock offset read from the server's `Date` header,
and later requests keep that offset; an offset beyond `MAX_CLOCK_OFFSET_S` is refused
instead. A header that does not read (any value at all) only means the client goes
without it. TLS verification is always on. The transport
is injectable so tests can use `httpx.MockTransport` or the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self, cast

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from sync import __version__
from sync.core.selection import FLOW_ID_RULE, is_flow_id
from sync.errors import (
    AccountError,
    ClockSkewError,
    FlowRequestError,
    PayloadError,
    TransientError,
)
from sync.vendor.body import BodyCap, BodyReader, BodyRefused, BodyTooLarge, size_text
from sync.vendor.payload import (
    DETAILS_CAP_BYTES,
    LISTING_CAP_BYTES,
    ApiFlow,
    Envelope,
    ListedItems,
    parse_envelope,
    parse_flow,
    parse_listing,
)
from sync.vendor.signing import signed_headers
from sync.vendor.transport import AiohttpTransport
from sync.vocabulary import ErrorKind

log = logging.getLogger(__name__)

ACCOUNT_HINTS = {
    "-1": ("account authentication failed", "check FLOWSYNC_API_KEY and FLOWSYNC_API_SECRET"),
    "-2": ("request IP not allowed", "allow this host's address in the vendor's console"),
}
CLOCK_CODE = "-16"
LIST_ENDPOINT = "flow/list"
USER_AGENT = f"flowsync/{__version__}"
# Only the encodings httpx decodes by itself: an HTTP library underneath may offer more (zstd).
EXTRA_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"}
TRANSIENT_CODES = {"-18": "server-side system error"}
MAX_REASON_CHARS = 200  # of a server's own words quoted in an error, so that it stays one readable line
# A server clock further off than this is a broken clock or a broken header, not a time zone slip:
# signing with it would only trade one refusal for another, so the client refuses it instead.
MAX_CLOCK_OFFSET_S = 24 * 3600.0
# The settings that raise each cap, named in the error when an answer passes it.
DETAILS_CAP_SETTING = "FLOWSYNC_MAX_DETAILS_BYTES"
LISTING_CAP_SETTING = "FLOWSYNC_MAX_LISTING_BYTES"
ERROR_BODY_READ_OFF_BYTES = 2**16  # a 429 or 503 page this short is read to keep its connection


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait between attempts of one request."""

    initial_s: float = 0.5
    max_s: float = 30.0
    retry_after_cap_s: float = 60.0


@dataclass(frozen=True, slots=True)
class _Scrubber:
    """Masks what this request sent that must never be repeated (its Sign, the secret).

    In any letter case (a gateway may echo the Sign upper-cased), and always before a text is
    cut to a length limit: cut first, a Sign that straddles the limit would leave a piece of
    itself that no longer matches.
    """

    secrets: tuple[str, ...] = field(repr=False)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        present = sorted((secret for secret in self.secrets if secret), key=len, reverse=True)
        if present:
            pattern = re.compile("|".join(map(re.escape, present)), re.IGNORECASE)
            object.__setattr__(self, "_pattern", pattern)

    def __call__(self, text: str, limit: int | None = None) -> str:
        """`text` with every secret masked, then cut to `limit` characters if one is given."""
        if self._pattern is not None:
            text = self._pattern.sub("***", text)
        return text if limit is None else text[:limit]


@dataclass(frozen=True, slots=True)
class _Signature:
    """The headers of every request sent within one second, and what to mask in their answers."""

    timestamp: int
    headers: list[tuple[bytes, bytes]] = field(repr=False)
    scrub: _Scrubber = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Answer:
    response: httpx.Response
    envelope: Envelope
    scrub: _Scrubber
    items: ListedItems | None = None  # `/flow/list` only: its `data` array, kept as text


@dataclass(frozen=True, slots=True)
class Listing:
    """`/flow/list`: every listed item, each with an integer `flowId`, unique among the valid ones.

    The items stay as the API's text until `batches` validates them a batch at a time, so a
    listing of a large account is never held decoded as a whole. An item whose `flowId` no flow
    can have (`sync.core.selection.is_flow_id`: 0, -5, 2**63) is not a flow: it is validated as
    a `PayloadError` of its own, without a flow ID.
    """

    items: ListedItems
    ids: list[int | None]  # each item's flowId, in order; None where it breaks the rule for flow IDs

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def flow_ids(self) -> set[int]:
        """Every listed flow, including those whose content did not validate."""
        return {flow_id for flow_id in self.ids if flow_id is not None}

    def validated(self) -> Iterator[tuple[int | None, ApiFlow | PayloadError]]:
        """The listed items in order, each decoded and validated: the flow, or what is wrong with it."""
        for index, (flow_id, item) in enumerate(zip(self.ids, self.items, strict=True)):
            if flow_id is None:
                problem = f"item {index}: flowId {_shown_id(self.items.flow_ids[index])} is not a flow ID"
                yield None, PayloadError(f"{problem} ({FLOW_ID_RULE})", endpoint=LIST_ENDPOINT)
                continue
            try:
                yield flow_id, parse_flow(item)
            except ValueError as exc:
                yield flow_id, PayloadError(str(exc), endpoint=LIST_ENDPOINT, flow_id=flow_id)

    def batches(self, size: int) -> Iterator[list[tuple[int | None, ApiFlow | PayloadError]]]:
        """`validated`, `size` items at a time."""
        batch: list[tuple[int | None, ApiFlow | PayloadError]] = []
        for validated in self.validated():
            batch.append(validated)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    @property
    def flows(self) -> list[ApiFlow]:
        """Every listed flow whose content validated (decodes the whole listing)."""
        return [f for _, f in self.validated() if isinstance(f, ApiFlow)]

    @property
    def invalid(self) -> list[PayloadError]:
        """Every listed flow whose content did not validate (decodes the whole listing)."""
        return [f for _, f in self.validated() if isinstance(f, PayloadError)]


class FlowApiClient:
    """Fetches flows from the vendor API; use as `async with FlowApiClient(...) as client`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: SecretStr,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        max_connections: int = 8,
        max_details_bytes: int = DETAILS_CAP_BYTES,
        max_listing_bytes: int = LISTING_CAP_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout_s = timeout_s
        self._retries = retries
        self._details_cap = BodyCap(max_details_bytes, DETAILS_CAP_SETTING)
        self._listing_cap = BodyCap(max_listing_bytes, LISTING_CAP_SETTING)
        self._backoff = backoff or Backoff()
        self._exponential = wait_exponential_jitter(
            multiplier=self._backoff.initial_s, max=self._backoff.max_s, jitter=self._backoff.initial_s
        )
        self._clock = clock
        self._sleep = sleep
        self.clock_offset_s = 0.0
        self.requests_sent = 0
        if transport is None:
            transport = AiohttpTransport(max_connections=max_connections, connect_timeout_s=timeout_s)
        # The transport is called directly: httpx.AsyncClient's send pipeline (URL merging, auth,
        # redirects, cookies, hooks) cost more CPU per request than aiohttp itself, and flowsync
        # uses none of it (no redirects are followed; the timeout is asyncio.timeout below).
        self._base_url = base_url.rstrip("/") + "/"
        self._base_path = httpx.URL(self._base_url).path  # what the request log shows of the URL
        self._transport = transport
        self._closed = False
        self._signature: _Signature | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._transport.aclose()

    async def flow_details(self, flow_id: int) -> ApiFlow | None:
        """One flow's configuration, or None when the API says it no longer exists (`data: null`)."""
        endpoint = f"flow/details/{flow_id}"
        envelope = (await self._call(endpoint, flow_id)).envelope
        if envelope.data is None:
            return None
        try:
            flow = parse_flow(envelope.data)
        except ValueError as exc:
            raise PayloadError(str(exc), endpoint=endpoint, flow_id=flow_id) from exc
        if flow.flow_id != flow_id:
            raise PayloadError(f"answer is about flow {flow.flow_id}", endpoint=endpoint, flow_id=flow_id)
        return flow

    async def flow_list(self) -> Listing:
        """Every flow of the account; a listing that cannot be trusted as a whole raises `PayloadError`."""
        items = (await self._call(LIST_ENDPOINT, None)).items
        if items is None:
            raise PayloadError("data is not a list of flows", endpoint=LIST_ENDPOINT)
        ids: list[int | None] = []
        seen: set[int] = set()
        for index, flow_id in enumerate(items.flow_ids):
            if flow_id is None:
                # Without an ID we cannot tell which flow is missing, so nothing may be marked deleted.
                raise PayloadError(f"item {index} has no readable flowId", endpoint=LIST_ENDPOINT)
            if not is_flow_id(flow_id):
                # An ID no flow can have names no stored flow either: that item alone fails.
                ids.append(None)
                continue
            if flow_id in seen:
                raise PayloadError(f"flow {flow_id} is listed twice", endpoint=LIST_ENDPOINT)
            seen.add(flow_id)
            ids.append(flow_id)
        return Listing(items, ids)

    async def _call(self, endpoint: str, flow_id: int | None) -> _Answer:
        """One logical request: retries transient failures and re-signs once after `-16`."""
        attempts = itertools.count(1)  # numbers every request of this call, for the request log
        try:
            return await self._signed_call(endpoint, flow_id, attempts)
        except TransientError as error:
            if self._retries == 0:
                raise
            first_failure: TransientError | None = error
        # The retry loop is only set up once the first attempt has failed: nearly every request
        # succeeds at once, and tenacity's setup costs a tenth of a whole request's CPU. The
        # failure is replayed as the loop's first attempt, so waits and limits are tenacity's own.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            retry=retry_if_exception_type(TransientError),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if first_failure is not None:
                    replayed, first_failure = first_failure, None
                    raise replayed
                return await self._signed_call(endpoint, flow_id, attempts)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _signed_call(self, endpoint: str, flow_id: int | None, attempts: Iterator[int]) -> _Answer:
        answer = await self._attempt(endpoint, flow_id, next(attempts))
        if answer.envelope.status != CLOCK_CODE:
            return self._classify(answer, endpoint, flow_id)
        server_time = _server_time(answer.response)
        if server_time is None:
            raise ClockSkewError(
                "timestamp expired (-16) and the answer has no usable Date header to correct the clock",
                endpoint=endpoint,
                flow_id=flow_id,
                code=CLOCK_CODE,
            )
        offset_s = server_time - self._clock()
        if abs(offset_s) > MAX_CLOCK_OFFSET_S:
            raise ClockSkewError(
                f"timestamp expired (-16) and the answer's Date header puts the server's clock "
                f"{_days(offset_s)} this host's, more than the {MAX_CLOCK_OFFSET_S / 3600:.0f} h flowsync "
                "corrects: check both clocks",
                endpoint=endpoint,
                flow_id=flow_id,
                code=CLOCK_CODE,
            )
        self.clock_offset_s = offset_s
        answer = await self._attempt(endpoint, flow_id, next(attempts))
        if answer.envelope.status == CLOCK_CODE:
            raise ClockSkewError(
                f"timestamp expired (-16) even after correcting the clock by {self.clock_offset_s:+.0f} s",
                endpoint=endpoint,
                flow_id=flow_id,
                code=CLOCK_CODE,
            )
        return self._classify(answer, endpoint, flow_id)

    async def _attempt(self, endpoint: str, flow_id: int | None, attempt: int) -> _Answer:
        """Send one signed request and decode its envelope; HTTP-level failures raise."""
        if self._closed:
            raise RuntimeError("the API client is closed")
        signature = self._sign(int(self._clock() + self.clock_offset_s))
        scrub = signature.scrub
        cap = self._listing_cap if endpoint == LIST_ENDPOINT else self._details_cap
        reader: BodyReader | None = None
        body = b""
        self.requests_sent += 1
        started = time.perf_counter()
        status: int | None = None
        failure: str | None = "cancelled"
        try:
            # One deadline for the whole exchange: connecting, the headers, and reading and
            # decoding the body, however slowly it comes or however long it would go on.
            async with asyncio.timeout(self._timeout_s):
                request = httpx.Request("GET", self._base_url + endpoint, headers=signature.headers)
                response = await self._transport.handle_async_request(request)
                status = response.status_code
                try:
                    if response.status_code == 200:
                        reader = _body_reader(response, cap)
                        async with aclosing(_raw_chunks(response)) as chunks:
                            body = await reader.read(chunks)
                    else:  # judged by its status alone
                        await _read_off(response)
                finally:
                    await response.aclose()
            failure = None
        except (httpx.TransportError, TimeoutError) as exc:
            failure = type(exc).__name__
            raise TransientError(
                _network_problem(exc, self._timeout_s, scrub, reader),
                endpoint=endpoint,
                flow_id=flow_id,
                kind=ErrorKind.NETWORK,
            ) from exc
        except BodyRefused as exc:  # past its cap, or not what its Content-Encoding says
            failure = "body past its cap" if isinstance(exc, BodyTooLarge) else "undecodable body"
            raise PayloadError(str(exc), endpoint=endpoint, flow_id=flow_id) from exc
        finally:
            if log.isEnabledFor(logging.DEBUG):
                self._log_request(endpoint, status, failure, attempt, started)
        if status == 429 or status >= 500:
            raise TransientError(
                scrub(f"HTTP {status} {response.reason_phrase}".rstrip()),
                endpoint=endpoint,
                flow_id=flow_id,
                code=str(status),
                kind=ErrorKind.HTTP,
                retry_after_s=_retry_after(response, self._server_now(response)),
            )
        if status != 200:
            raise FlowRequestError(
                scrub(f"HTTP {status} {response.reason_phrase}".rstrip()),
                endpoint=endpoint,
                flow_id=flow_id,
                code=str(status),
                kind=ErrorKind.HTTP,
            )
        try:
            if endpoint == LIST_ENDPOINT:
                envelope, items = parse_listing(body)
                return _Answer(response, envelope, scrub, items)
            return _Answer(response, parse_envelope(body), scrub)
        except ValueError as exc:
            # The body's shape is described, not quoted, but a key named in it could echo the Sign.
            raise PayloadError(scrub(str(exc)), endpoint=endpoint, flow_id=flow_id) from exc

    def _log_request(
        self, endpoint: str, status: int | None, failure: str | None, attempt: int, started: float
    ) -> None:
        """One DEBUG record per request: never a header value, and the path has no query string."""
        duration_ms = (time.perf_counter() - started) * 1000
        path = self._base_path + endpoint
        outcome = "no answer" if status is None else str(status)
        if failure is not None:
            outcome += f" ({failure})"
        log.debug(
            "GET %s %s (attempt %d, %.1f ms)",
            path,
            outcome,
            attempt,
            duration_ms,
            extra={
                "method": "GET",
                "path": path,
                "status": status,
                "attempt": attempt,
                "duration_ms": round(duration_ms, 1),
            },
        )

    def _sign(self, timestamp: int) -> _Signature:
        """Headers for `timestamp`, built once per second: every request within it signs the same."""
        signature = self._signature
        if signature is None or signature.timestamp != timestamp:
            headers = signed_headers(self._api_key, self._api_secret, timestamp) | EXTRA_HEADERS
            # Text the server sends back (reason, status phrase) could echo what we sent.
            scrub = _Scrubber((headers["Sign"], self._api_secret.get_secret_value()))
            encoded = [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
            signature = self._signature = _Signature(timestamp, encoded, scrub)
        return signature

    def _classify(self, answer: _Answer, endpoint: str, flow_id: int | None) -> _Answer:
        envelope = answer.envelope
        if envelope.ok:
            return answer
        code = envelope.status
        reason = answer.scrub((envelope.reason or "").strip(), limit=MAX_REASON_CHARS)
        if code in ACCOUNT_HINTS:
            meaning, hint = ACCOUNT_HINTS[code]
            detail = f"API status {code} ({reason or meaning}); {hint}"
            raise AccountError(detail, endpoint=endpoint, flow_id=flow_id, code=code, kind=ErrorKind.API)
        detail = f"API status {code}" + (f" ({reason})" if reason else "")
        error_type = TransientError if code in TRANSIENT_CODES else FlowRequestError
        raise error_type(detail, endpoint=endpoint, flow_id=flow_id, code=code, kind=ErrorKind.API)

    def _server_now(self, response: httpx.Response) -> float:
        """The server's time by its `Date` header when that is readable and sane, else ours."""
        now = self._clock()
        server_time = _server_time(response)
        if server_time is None or abs(server_time - now) > MAX_CLOCK_OFFSET_S:
            return now
        return server_time

    def _wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the server's Retry-After if it gave one, else backoff."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientError) and error.retry_after_s is not None:
            return min(error.retry_after_s, self._backoff.retry_after_cap_s)
        return float(self._exponential(state))


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """`Retry-After` in seconds, in either of its forms; a date is read against the server's own clock."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)  # beyond a float's range this is inf, which the cap then bounds
    when = _http_date(value)
    return None if when is None else max(0.0, when - now)


def _server_time(response: httpx.Response) -> float | None:
    """The server's clock by its `Date` header, as Unix time; None when it has none that reads."""
    return _http_date(response.headers.get("Date"))


def _http_date(value: str | None) -> float | None:
    """An HTTP-date as Unix time; None when absent, unreadable, without a zone, or out of range.

    The standard library's parser raises `OverflowError` for a year or a zone offset of many
    digits and `ValueError` for a field out of range: a header is data, and no value of it may
    end anything but the reading of that header.
    """
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
        return when.timestamp() if when.tzinfo is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def _days(offset_s: float) -> str:
    """How far the server's clock is from ours, in words: `3 days ahead of`, `2.5 days behind`."""
    days = abs(offset_s) / 86400
    amount = f"{days:.0f}" if days >= 10 else f"{days:.1f}"
    return f"{amount} days {'ahead of' if offset_s > 0 else 'behind'}"


def _shown_id(flow_id: int | None) -> str:
    """A listed flowId as an error shows it: whole, unless it is absurdly long."""
    if flow_id is not None and abs(flow_id) < 10**24:
        return str(flow_id)
    return "beyond 24 digits"


def _body_reader(response: httpx.Response, cap: BodyCap) -> BodyReader:
    """A reader for this answer's body that refuses at once a Content-Length beyond the cap."""
    # An answer built whole in memory (httpx.MockTransport given `content=`) was decoded by httpx.
    codings = () if response.is_stream_consumed else response.headers.get_list("Content-Encoding", True)
    reader = BodyReader(codings, cap)
    reader.check_length(response.headers.get("Content-Length"))
    return reader


async def _raw_chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The body as it came off the wire, still encoded."""
    if response.is_stream_consumed:
        yield response.content
        return
    # httpx declares an AsyncIterator, but `aiter_raw` is a generator: closed here, not when collected.
    async with aclosing(cast(AsyncGenerator[bytes, None], response.aiter_raw())) as chunks:
        async for chunk in chunks:
            yield chunk


async def _read_off(response: httpx.Response) -> None:
    """Read a short body, announced as such, to its end: its connection then goes back to the pool.

    Any other body is left unread, and its connection closed: an error answer's text is never used.
    """
    length = response.headers.get("Content-Length", "").strip()
    if response.is_stream_consumed or not (length.isascii() and length.isdigit() and len(length) < 6):
        return
    if int(length) > ERROR_BODY_READ_OFF_BYTES:
        return
    with contextlib.suppress(httpx.TransportError):  # the status has already said what went wrong
        async with aclosing(cast(AsyncGenerator[bytes, None], response.aiter_raw())) as chunks:
            async for _ in chunks:
                pass


def _network_problem(
    exc: BaseException, timeout_s: float, scrub: _Scrubber, reader: BodyReader | None
) -> str:
    """What went wrong on the wire, in the transport's words (which may quote what the server sent)."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        if reader is not None:  # the headers came, the body did not end in time
            received = size_text(reader.received)
            return f"the answer did not end within {timeout_s:g} s ({received} received)"
        return f"no answer within {timeout_s:g} s ({type(exc).__name__})"
    detail = scrub(" ".join(str(exc).split()), limit=MAX_REASON_CHARS)
    return f"connection failed ({detail or type(exc).__name__})"
