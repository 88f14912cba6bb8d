"""Not even a fragment of a request's Sign is kept when a server echoes it back, in any case.

A vendor or a gateway may repeat what it received in its answer: in the `reason`, in the status
line, in a JSON key. The client masks the Sign (and the secret) wherever it appears, whatever
the letters' case, before it cuts a text to its length limit, so a Sign at any offset of a long
text leaves no 8-hex-digit piece of itself in an error, `flows.last_error`, `flow_history` or
the logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from sync.errors import ApiError
from sync.simulator import SimulatorHandle
from sync.store.schema import flow_history, flows
from sync.vendor.client import FlowApiClient
from tests.conftest import settings_for
from tests.test_sync_run import sync

FRAGMENT = 8  # hex digits: a piece this long of a 32-digit Sign is already too much to give away
LONG = 400  # characters of filler around the echoed Sign; more than any limit a text is cut to
CASES: dict[str, Callable[[str], str]] = {"lower": str.lower, "upper": str.upper}


def sign_fragments(text: str, signs: Iterable[str]) -> list[str]:
    """Every piece of `FRAGMENT` hex digits of any of `signs` that `text` holds, in any case."""
    lowered = text.lower()
    return sorted(
        {
            sign[start : start + FRAGMENT]
            for sign in signs
            for start in range(len(sign) - FRAGMENT + 1)
            if sign[start : start + FRAGMENT].lower() in lowered
        }
    )


def echoed(sign: str, offset: int, case: str) -> str:
    """A long text (no hex digits of its own) with the Sign at `offset`."""
    return "x" * offset + CASES[case](sign) + "-" * (LONG - offset)


class EchoingApi:
    """Answers `-22` to `/flow/details/{n}` with the request's Sign in the reason at offset n - 1."""

    def __init__(self, case: str) -> None:
        self.case = case
        self.signs: set[str] = set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        sign = request.headers["Sign"]
        self.signs.add(sign)
        offset = int(request.url.path.rsplit("/", 1)[1]) - 1
        return httpx.Response(200, json={"status": "-22", "reason": echoed(sign, offset, self.case)})


@pytest.mark.parametrize("case", CASES)
def test_a_reason_echoing_the_sign_at_any_offset_keeps_no_fragment(case: str) -> None:
    """The Sign at every offset of a long reason, in lower and upper case: no piece of it in the error."""
    api = EchoingApi(case)

    async def errors() -> list[ApiError]:
        client = FlowApiClient(
            "https://api.vendor.test/otp",
            "key",
            SecretStr("s3cr3t"),
            transport=httpx.MockTransport(api.handle),
            retries=0,
        )
        caught: list[ApiError] = []
        async with client:
            for flow_id in range(1, LONG + 2):
                try:
                    await client.flow_details(flow_id)
                except ApiError as exc:
                    caught.append(exc)
        return caught

    caught = asyncio.run(errors())
    assert len(caught) == LONG + 1
    assert api.signs
    for error in caught:
        assert not sign_fragments(str(error), api.signs), str(error)
        assert len(error.message) < 300  # the reason is still cut to a readable line


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("prefix", [0, 7, 8, 9, 20, 39, 100])
def test_a_duplicate_key_echoing_the_sign_keeps_no_fragment(case: str, prefix: int) -> None:
    """A body whose repeated JSON key holds the Sign is refused without any piece of the Sign."""
    signs: set[str] = set()

    def handle(request: httpx.Request) -> httpx.Response:
        sign = request.headers["Sign"]
        signs.add(sign)
        key = "k" * prefix + CASES[case](sign)
        return httpx.Response(200, content=f'{{"status": "0", "{key}": 1, "{key}": 2}}'.encode())

    async def error() -> ApiError:
        client = FlowApiClient(
            "https://api.vendor.test/otp", "key", SecretStr("s3cr3t"), transport=httpx.MockTransport(handle)
        )
        async with client:
            with pytest.raises(ApiError) as caught:
                await client.flow_details(1)
            return caught.value

    text = str(asyncio.run(error()))
    assert "duplicate key" in text
    assert not sign_fragments(text, signs), text


@asynccontextmanager
async def status_line_echo(case: str, signs: set[str]) -> AsyncIterator[str]:
    """A server whose status line repeats the request's Sign at offset n - 1 for `/flow/details/{n}`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        path = head.split(" ", 2)[1]
        (sign,) = (line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.startswith("Sign:"))
        signs.add(sign)
        text = echoed(sign, int(path.rsplit("/", 1)[1]) - 1, case)
        writer.write(f"HTTP/1.1 2x0 {text}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/otp"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("case", CASES)
def test_a_status_line_echoing_the_sign_keeps_no_fragment(case: str) -> None:
    """Over the wire, a malformed status line that repeats the Sign is a network error without it."""
    signs: set[str] = set()

    async def errors() -> list[ApiError]:
        caught: list[ApiError] = []
        async with status_line_echo(case, signs) as base_url:
            client = FlowApiClient(base_url, "key", SecretStr("s3cr3t"), retries=0, timeout_s=5)
            async with client:
                for flow_id in range(1, 241, 3):
                    try:
                        await client.flow_details(flow_id)
                    except ApiError as exc:
                        caught.append(exc)
        return caught

    caught = asyncio.run(errors())
    assert len(caught) == 80
    assert signs
    assert all(error.kind == "network" for error in caught)
    for error in caught:
        assert not sign_fragments(str(error), signs), str(error)


def test_no_fragment_of_the_sign_is_stored_or_logged(
    engine: Engine, sim: SimulatorHandle, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Sign echoes around the length limit, in both cases: none in `flows`, `flow_history` or the logs."""
    settings = settings_for(sim, database_url, "150-229")
    for flow_id in range(150, 230):
        sim.catalog.put({"flowId": flow_id, "name": f"Flow {flow_id}", "flow": []})
    assert sync(settings, engine).status == "ok"
    signs: set[str] = set()

    def handle(request: httpx.Request) -> httpx.Response:
        sign = request.headers["Sign"]
        signs.add(sign)
        flow_id = int(request.url.path.rsplit("/", 1)[1])
        reason = echoed(sign, flow_id - 1, "upper" if flow_id % 2 else "lower")
        return httpx.Response(200, json={"status": "-22", "reason": reason})

    with caplog.at_level(logging.DEBUG):
        report = sync(settings, engine, transport=httpx.MockTransport(handle))
    assert report.counts.failed == 80
    with engine.connect() as connection:
        stored = [
            *connection.scalars(sa.select(flows.c.last_error)),
            *connection.scalars(sa.select(flow_history.c.error_message)),
        ]
    assert len([text for text in stored if text]) == 160
    assert signs
    for text in stored:
        assert not sign_fragments(text or "", signs), text
    assert not sign_fragments(caplog.text, signs)
