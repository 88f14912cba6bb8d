"""The simulated vendor API as an aiohttp application: authentication, routes, faults and statistics.

Every request is checked as the vendor documents it, in this order: `Api-Key`
and `Sign` (else `-1`), then `Timestamp` against the server's own clock (else
`-16`), which may run ahead or behind real time by `clock_offset_s` and is
announced in every `Date` header. Only then does the `FaultPlan` get a say, so a
badly signed request never uses up a queued fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import re
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate
from http.client import responses
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from sync.simulator.catalog import Flow, FlowCatalog
from sync.simulator.faults import LIST, Fault, FaultKind, FaultPlan, Target
from sync.vendor.signing import sign

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
# English renderings of the vendor's status table (its page is in Chinese).
REASONS = {
    "0": "success",
    "-1": "account authentication failed",
    "-2": "request IP not allowed",
    "-16": "timestamp expired",
    "-18": "system error",
    "-22": "parameter error",
}
_FLOW_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: int() would also take "+1", " 1" and "1_0"
Envelope = dict[str, Any]


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator behaves; the defaults make a small, fast, honest vendor."""

    api_key: str = "demo-key"
    api_secret: str = "demo-secret"  # noqa: S105 - the fake's own made-up secret, printed by `fake-api`
    flow_count: int = 20
    seed: int = 0
    latency_s: float = 0.0
    clock_offset_s: float = 0.0
    timestamp_window_s: float = 60.0
    prefix: str = "/otp"

    def __post_init__(self) -> None:
        if self.flow_count < 0 or self.latency_s < 0 or self.timestamp_window_s <= 0:
            raise ValueError("flow_count and latency_s must be >= 0, timestamp_window_s > 0")
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError(f"prefix must be empty or start, and not end, with '/': {self.prefix!r}")


class SimulatorStats:
    """What the simulator has seen and answered; readable from any thread, each property returns a copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._responses: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._served: dict[int, Flow | None] = {}
        self._counters = (self._requests, self._responses, self._faults)

    @property
    def requests(self) -> dict[str, int]:
        """Requests by endpoint: `details`, `list`."""
        with self._lock:
            return dict(self._requests)

    @property
    def responses(self) -> dict[str, int]:
        """Answers by API status (`"0"`, `"-22"`), or `"http <status>"` for other bodies, or `"aborted"`."""
        with self._lock:
            return dict(self._responses)

    @property
    def faults(self) -> dict[str, int]:
        """Injected faults by `FaultKind` value."""
        with self._lock:
            return dict(self._faults)

    @property
    def served(self) -> dict[int, Flow | None]:
        """Per flow ID, the last state served with success; None after `data: null` or when unlisted."""
        with self._lock:
            return dict(self._served)

    def reset(self) -> None:
        with self._lock:
            for counter in self._counters:
                counter.clear()
            self._served.clear()

    def record(self, *, request: str = "", response: str = "", fault: str = "") -> None:
        """Count one request, response or fault (each by its key) in one go."""
        with self._lock:
            if request:
                self._requests[request] += 1
            if response:
                self._responses[response] += 1
            if fault:
                self._faults[fault] += 1

    def record_served(self, flows: dict[int, Flow | None], *, listing: bool = False) -> None:
        """Remember what a successful answer told; a listing also says every flow it lacks is gone."""
        with self._lock:
            if listing:
                self._served.update(dict.fromkeys(self._served.keys() - flows.keys()))
            self._served.update(flows)


def _envelope(status: str, data: Any = None, reason: str | None = None) -> Envelope:
    if status == "0":
        return {"status": "0", "reason": "success", "data": data}
    return {"status": status, "reason": reason or REASONS.get(status, "error")}


def _encode(envelope: Envelope) -> bytes:
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


_SUCCESS_HEAD = _encode(_envelope("0", None)).removesuffix(b"null}")  # b'{"status":"0",...,"data":'


_SPACES = b" " * 65536


@functools.lru_cache(maxsize=4)
def bomb(size_bytes: int, layers: int) -> bytes:
    """`size_bytes` of spaces gzipped `layers` times, made once per size and without holding them.

    The first layer is one gzip member whose deflate data is the same block, each compressing
    1 MiB of spaces from a reset dictionary, repeated: 1 GiB takes a second to make, mostly its CRC.
    """
    piece = b" " * 2**20
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = packer.compress(piece) + packer.flush(zlib.Z_FULL_FLUSH)  # later blocks are byte-identical
    count, rest = divmod(size_bytes, len(piece))
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(piece, crc)
    crc = zlib.crc32(piece[:rest], crc)
    tail = packer.compress(piece[:rest]) + packer.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, no time, best, unknown OS
    body = header + block * count + tail + struct.pack("<II", crc, size_bytes & 0xFFFFFFFF)
    for _ in range(layers - 1):
        body = zlib.compress(body, 9, wbits=zlib.MAX_WBITS | 16)
    return body


class Simulator:
    """The request handlers, wired to a catalog, a fault plan and statistics shared with the caller."""

    def __init__(
        self, config: SimulatorConfig, catalog: FlowCatalog, faults: FaultPlan, stats: SimulatorStats
    ) -> None:
        self.config, self.catalog, self.faults, self.stats = config, catalog, faults, stats
        self._closing: asyncio.Event | None = None
        # Per-request work kept off the hot path (a benchmark must never wait on its simulator):
        # each flow's answer is encoded once per version of the flow, Date once per second,
        # and the expected Sign once per Timestamp value.
        self._answers: dict[int, tuple[Flow, bytes]] = {}
        self._date: tuple[int, str] = (0, "")
        self._sign: tuple[str, str] | None = None

    def now(self) -> float:
        """The server's clock, in Unix seconds."""
        return time.time() + self.config.clock_offset_s + self.faults.clock_offset_s

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"{self.config.prefix}/flow/details/{{flow_id}}", self._details)
        app.router.add_get(f"{self.config.prefix}/flow/list", self._list)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, _: web.Application) -> None:
        self._closing = asyncio.Event()

    async def _on_shutdown(self, _: web.Application) -> None:
        # Hung requests would otherwise hold the shutdown for its whole timeout.
        if self._closing is not None:
            self._closing.set()

    async def _details(self, request: web.Request) -> web.StreamResponse:
        self.stats.record(request="details")
        raw_id = request.match_info["flow_id"]
        flow_id = int(raw_id) if _FLOW_ID.fullmatch(raw_id) else None
        return await self._handle(request, flow_id)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        self.stats.record(request="list")
        return await self._handle(request, LIST)

    async def _handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        if self.config.latency_s:
            await asyncio.sleep(self.config.latency_s)
        refusal = self._refusal(request)
        if refusal is not None:
            return self._json(_envelope(refusal))
        fault = self.faults.pick(target)
        if fault is not None:
            self.stats.record(fault=fault.kind.value)
            if fault.kind is FaultKind.DELAY:
                await asyncio.sleep(fault.delay_s)
                fault = None
        if target is None:
            envelope = _envelope("-22", reason="parameter error: flowId must be an integer")
        elif target == LIST:
            envelope = _envelope("0", self.catalog.listing())
        else:
            flow = self.catalog.stored(target)
            if flow is not None and fault is None:
                self.stats.record_served({target: flow})
                return self._flow_answer(target, flow)
            envelope = (
                _envelope("0", flow)
                if flow is not None
                else _envelope("-22", reason=f"parameter error: flow {target} does not exist")
            )
        if fault is None:
            if envelope["status"] == "0":
                listing = target == LIST
                flows = envelope["data"] if listing else [envelope["data"]]
                self.stats.record_served({flow["flowId"]: flow for flow in flows}, listing=listing)
            return self._json(envelope)
        return await self._faulty(request, target, envelope, fault)

    def _flow_answer(self, flow_id: int, flow: Flow) -> web.Response:
        """`/flow/details` success, byte for byte what `_json` would send, encoded once per flow version."""
        cached = self._answers.get(flow_id)
        if cached is None or cached[0] is not flow:
            cached = (flow, _SUCCESS_HEAD + _encode(flow) + b"}")
            self._answers[flow_id] = cached
        self.stats.record(response="0")
        return web.Response(body=cached[1], headers=self._headers(JSON_CONTENT_TYPE))

    def _expected_sign(self, timestamp: str) -> str:
        if self._sign is None or self._sign[0] != timestamp:
            self._sign = (timestamp, sign(self.config.api_key, SecretStr(self.config.api_secret), timestamp))
        return self._sign[1]

    def _refusal(self, request: web.Request) -> str | None:
        """The API status refusing this request's credentials or timestamp, or None if they pass."""
        key = request.headers.get("Api-Key", "")
        timestamp = request.headers.get("Timestamp", "")
        expected = self._expected_sign(timestamp)
        if key != self.config.api_key or not hmac.compare_digest(request.headers.get("Sign", ""), expected):
            return "-1"
        if not timestamp.isascii() or not timestamp.isdigit():
            return "-16"
        if abs(int(timestamp) - self.now()) > self.config.timestamp_window_s:
            return "-16"
        return None

    async def _faulty(
        self, request: web.Request, target: Target, envelope: Envelope, fault: Fault
    ) -> web.StreamResponse:
        if fault.kind is FaultKind.API_STATUS:
            return self._json(_envelope(fault.code))
        if fault.kind is FaultKind.NULL_DATA:
            if isinstance(target, int):
                self.stats.record_served({target: None})
            return self._json(_envelope("0", None))
        if fault.kind is FaultKind.WRONG_ID:
            if isinstance(target, int) and envelope["status"] == "0":
                envelope = _envelope("0", {**envelope["data"], "flowId": target + 1})
            return self._json(envelope)
        if fault.kind in (FaultKind.RESET, FaultKind.CLOSE_MID_BODY, FaultKind.HANG):
            return await self._broken_connection(request, envelope, fault)
        if fault.kind in (FaultKind.BOMB, FaultKind.OVERSIZE, FaultKind.ENDLESS):
            return await self._huge_body(request, envelope, fault)
        return self._broken_body(envelope, fault)

    def _broken_body(self, envelope: Envelope, fault: Fault) -> web.Response:
        """A complete HTTP response whose body no client should accept as an answer."""
        status, content_type, body = fault.http_status, JSON_CONTENT_TYPE, b""
        phrase = f"{status} {responses.get(status, 'Error')}"
        match fault.kind:
            case FaultKind.NOT_OBJECT:
                body = b"[]"
            case FaultKind.TRUNCATED:
                whole = _encode(envelope)
                body = whole[: len(whole) // 2]
            case FaultKind.HTML:
                content_type = "text/html"
                page = f"<html><head><title>{phrase}</title></head><body><h1>{phrase}</h1></body></html>"
                body = page.encode()
            case FaultKind.HTTP_STATUS:
                content_type, body = "text/plain", phrase.encode()
        response = self._raw(status, body, content_type)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response

    async def _broken_connection(
        self, request: web.Request, envelope: Envelope, fault: Fault
    ) -> web.StreamResponse:
        """Abort the connection: at once, after half the body, or after hanging."""
        response = web.StreamResponse(headers=self._headers(JSON_CONTENT_TYPE))
        if fault.kind is FaultKind.CLOSE_MID_BODY:
            body = _encode(envelope)
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        elif fault.kind is FaultKind.HANG and self._closing is not None:
            # Ends early only when the server stops; a client that gives up cancels this handler.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay_s)
        self.stats.record(response="aborted")
        if request.transport is not None:
            request.transport.abort()
        # aiohttp takes the ConnectionError from finishing `response` on the dead transport for a client gone.
        return response

    async def _huge_body(self, request: web.Request, envelope: Envelope, fault: Fault) -> web.StreamResponse:
        """A bomb; or the right answer, then spaces to `size_bytes` or without end, until the client leaves.

        None is counted as served: a client must refuse it (an oversize answer is valid JSON,
        so a client allowing that much would store it without the simulator knowing).
        """
        if fault.kind is FaultKind.BOMB:
            # Made in a thread the first time (a second for 1 GiB): other requests go on meanwhile.
            body = await asyncio.to_thread(bomb, fault.size_bytes, fault.layers)
            packed = self._raw(200, body, JSON_CONTENT_TYPE)
            packed.headers["Content-Encoding"] = ", ".join(["gzip"] * fault.layers)
            return packed
        head = _encode(envelope)
        response = web.StreamResponse(headers=self._headers(JSON_CONTENT_TYPE))
        endless = fault.kind is FaultKind.ENDLESS
        left = None if endless else max(0, fault.size_bytes - len(head))
        if left is not None:
            response.content_length = len(head) + left
        self.stats.record(response="http 200")
        try:
            await response.prepare(request)
            await response.write(head)
            while (left is None or left > 0) and not (self._closing and self._closing.is_set()):
                chunk = _SPACES if left is None else _SPACES[: min(left, len(_SPACES))]
                await response.write(chunk)
                if left is not None:
                    left -= len(chunk)
                await asyncio.sleep(fault.delay_s if endless else 0)
            if left == 0:
                await response.write_eof()
                return response
        except ConnectionError:
            pass  # the client left, as it should
        if request.transport is not None:
            request.transport.abort()
        return response

    def _headers(self, content_type: str) -> dict[str, str]:
        second = int(self.now())
        if self._date[0] != second:
            self._date = (second, formatdate(second, usegmt=True))
        return {"Content-Type": content_type, "Date": self._date[1]}

    def _json(self, envelope: Envelope) -> web.Response:
        self.stats.record(response=envelope["status"])
        return web.Response(body=_encode(envelope), headers=self._headers(JSON_CONTENT_TYPE))

    def _raw(self, status: int, body: bytes, content_type: str) -> web.Response:
        self.stats.record(response=f"http {status}")
        return web.Response(status=status, body=body, headers=self._headers(content_type))
