"""Fault injection: what the simulated vendor does wrong, and when.

A `Fault` says how one response goes wrong; a `FaultPlan` says which requests
get one. For a request the plan looks, in order, at the account-wide fault, the
faults queued for that flow (or for `/flow/list`; each is used up by one request,
so "fail twice, then succeed" is two queued faults), the persistent fault for it,
and finally the random fault rate. Tests and the demo set the plan from their
own thread while the server reads it, hence the lock.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from enum import StrEnum
from typing import Final, Literal

LIST: Final = "list"
"""The `FaultPlan` target meaning the `/flow/list` endpoint."""

Target = int | Literal["list"] | None
"""A flow ID, `LIST`, or None for a request naming no valid flow (only account and random faults apply)."""


class FaultKind(StrEnum):
    """What goes wrong; the value is the key in `SimulatorStats.faults`."""

    API_STATUS = "api_status"  # a well-formed envelope with a non-zero `status`
    HTTP_STATUS = "http_status"  # a non-200 answer with a short text body, optionally `Retry-After`
    HTML = "html"  # an HTML error page, as a gateway or WAF sends, with 200 or an error status
    EMPTY_BODY = "empty_body"  # no body at all
    TRUNCATED = "truncated"  # the right body cut in half, with a matching Content-Length
    NOT_OBJECT = "not_object"  # valid JSON that is not an object
    WRONG_ID = "wrong_id"  # success for another flow (details only; the list is served unharmed)
    NULL_DATA = "null_data"  # success with `data: null`, which the contract reads as "deleted"
    DELAY = "delay"  # the right answer, `delay_s` late
    RESET = "reset"  # the connection is aborted before any response byte
    CLOSE_MID_BODY = "close_mid_body"  # headers and half the body, then the connection is aborted
    HANG = "hang"  # no answer for `delay_s` (or until the server stops), then the connection is aborted
    BOMB = "bomb"  # a few kilobytes of `gzip, gzip` (`layers` deep) that inflate to `size_bytes` of spaces
    OVERSIZE = "oversize"  # the right answer padded with spaces to `size_bytes`, Content-Length announced
    ENDLESS = "endless"  # the right answer's start, then spaces that never end (`delay_s` between chunks)


@dataclass(frozen=True)
class Fault:
    """How one response goes wrong: `Fault(FaultKind.RESET)`, or a class method for kinds with parameters.

    Fields a kind does not use are ignored; `http_status` also sets the status of the body faults
    (empty, truncated, not an object), which default to 200.
    """

    kind: FaultKind
    code: str = "-18"
    http_status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    size_bytes: int = 0
    layers: int = 2

    @classmethod
    def api(cls, code: str) -> Fault:
        """Answer `{"status": code, "reason": ...}`: `-1`, `-2`, `-16`, `-18`, `-22` or any other string."""
        return cls(FaultKind.API_STATUS, code=code)

    @classmethod
    def http(cls, status: int, retry_after: float | datetime | str | None = None) -> Fault:
        """Answer HTTP `status`; `retry_after` in seconds, an aware datetime (an HTTP-date), or verbatim."""
        if isinstance(retry_after, datetime):
            retry_after = format_datetime(retry_after, usegmt=True)
        elif isinstance(retry_after, int | float):
            retry_after = str(int(retry_after))
        return cls(FaultKind.HTTP_STATUS, http_status=status, retry_after=retry_after)

    @classmethod
    def html(cls, status: int = 200) -> Fault:
        return cls(FaultKind.HTML, http_status=status)

    @classmethod
    def delay(cls, delay_s: float) -> Fault:
        return cls(FaultKind.DELAY, delay_s=delay_s)

    @classmethod
    def hang(cls, delay_s: float = 3600.0) -> Fault:
        """Hold the request open far longer than any client timeout (the server's shutdown ends it)."""
        return cls(FaultKind.HANG, delay_s=delay_s)

    @classmethod
    def bomb(cls, size_bytes: int = 2**30, layers: int = 2) -> Fault:
        """A decompression bomb: `layers` of gzip (so `Content-Encoding: gzip, gzip`) over `size_bytes`."""
        if size_bytes < 0 or not 1 <= layers <= 8:
            raise ValueError("size_bytes must be >= 0 and layers within 1..8")
        return cls(FaultKind.BOMB, size_bytes=size_bytes, layers=layers)

    @classmethod
    def oversize(cls, size_bytes: int = 500 * 2**20) -> Fault:
        """A valid answer of `size_bytes` (spaces after the JSON), sent whole unless the client leaves."""
        if size_bytes < 0:
            raise ValueError("size_bytes must be >= 0")
        return cls(FaultKind.OVERSIZE, size_bytes=size_bytes)

    @classmethod
    def endless(cls, pause_s: float = 0.0) -> Fault:
        """A body that never ends, `pause_s` between its chunks: it stops when the client leaves."""
        return cls(FaultKind.ENDLESS, delay_s=pause_s)


class FaultPlan:
    """Which requests fail, and how. Every method is safe to call while the server runs."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._queued: dict[Target, deque[Fault]] = {}
        self._persistent: dict[Target, Fault] = {}
        self._account: Fault | None = None
        self._rate = 0.0
        self._random_faults: tuple[Fault, ...] = ()
        self._random_on_list = False
        self._clock_offset_s = 0.0

    def queue(self, target: int | Literal["list"], *faults: Fault) -> None:
        """Answer the next requests for `target` with these faults, one per request, in order."""
        with self._lock:
            self._queued.setdefault(target, deque()).extend(faults)

    def persist(self, target: int | Literal["list"], fault: Fault | None) -> None:
        """Answer every request for `target` with `fault` (after any queued ones); None clears it."""
        with self._lock:
            if fault is None:
                self._persistent.pop(target, None)
            else:
                self._persistent[target] = fault

    def set_account(self, fault: Fault | None) -> None:
        """Answer every request with `fault`, for example `Fault.api("-2")`; None clears it."""
        with self._lock:
            self._account = fault

    def set_random(
        self, rate: float, faults: Sequence[Fault], *, seed: int | None = None, on_list: bool = False
    ) -> None:
        """Answer a `rate` share of flow requests (and list requests if `on_list`) with one of `faults`."""
        if not 0.0 <= rate <= 1.0 or (rate > 0 and not faults):
            raise ValueError("rate must be within 0..1 and needs at least one fault")
        with self._lock:
            self._rate, self._random_faults, self._random_on_list = rate, tuple(faults), on_list
            if seed is not None:
                self._rng.seed(seed)

    def set_clock_offset(self, offset_s: float) -> None:
        """Run the server's clock `offset_s` ahead (or behind, if negative) of the configured clock."""
        with self._lock:
            self._clock_offset_s = offset_s

    @property
    def clock_offset_s(self) -> float:
        return self._clock_offset_s  # one attribute read is atomic; every request reads it

    def pending(self, target: int | Literal["list"]) -> int:
        """How many queued faults `target` has not used yet."""
        with self._lock:
            return len(self._queued.get(target, ()))

    def clear(self) -> None:
        """Remove every fault; the random generator keeps its state."""
        with self._lock:
            self._queued.clear()
            self._persistent.clear()
            self._account, self._rate, self._random_faults = None, 0.0, ()

    def pick(self, target: Target) -> Fault | None:
        """The fault for one request to `target`, using up a queued one; None answers normally."""
        with self._lock:
            if self._account is not None:
                return self._account
            queued = self._queued.get(target)
            if queued:
                return queued.popleft()
            if target in self._persistent:
                return self._persistent[target]
            if self._rate and (target != LIST or self._random_on_list) and self._rng.random() < self._rate:
                return self._rng.choice(self._random_faults)
            return None
