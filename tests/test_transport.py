"""The aiohttp-backed httpx transport, over real loopback servers.

What flowsync relies on: certificates are verified, bodies arrive as streams, still
compressed, that httpx decodes as over its own transport, a body left unread closes
its connection rather than poisoning the pool, nothing is kept between requests (cookies),
redirects are handed back rather than followed, and aiohttp's failures surface
as httpx's transport errors with the original as their cause.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from sync.errors import TransientError
from sync.vendor.client import FlowApiClient
from sync.vendor.transport import AiohttpTransport


@asynccontextmanager
async def serving(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def get(transport: AiohttpTransport, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """One request, its body read to the end."""
    answer = await transport.handle_async_request(httpx.Request("GET", url, headers=headers))
    await answer.aread()
    return answer


def self_signed(folder: Path) -> ssl.SSLContext:
    """A server context with a certificate no trust store knows (made by the openssl command)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    name = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *name, *files],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    """TLS verification is on: a self-signed server is a connect error, and no request reaches it."""
    reached: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.json_response({"status": "0"})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/otp/flow/list", handler)
        async with serving(app, self_signed(tmp_path)) as base_url:
            transport = AiohttpTransport(max_connections=2)
            try:
                await get(transport, f"{base_url}/otp/flow/list")
            finally:
                await transport.aclose()

    with pytest.raises(httpx.ConnectError) as caught:
        asyncio.run(scenario())
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorCertificateError)
    assert "certificate verify failed" in str(caught.value)
    assert reached == []


Handler = Callable[[web.Request], Awaitable[web.Response]]


def exchange(handler: Handler, *requests: httpx.Request, host: str = "127.0.0.1") -> list[httpx.Response]:
    """Send `requests` (paths only) in order through one transport to a server answering with `handler`.

    Each answer's body is read (and decoded by httpx) before the next request.
    """

    async def scenario() -> list[httpx.Response]:
        app = web.Application()
        app.router.add_route("*", "/{name}", handler)
        async with serving(app) as served_at:
            base_url = httpx.URL(served_at.replace("127.0.0.1", host))
            transport = AiohttpTransport(max_connections=2)
            answers = []
            try:
                for r in requests:
                    answer = await transport.handle_async_request(
                        httpx.Request(
                            r.method, base_url.join(r.url.path), headers=r.headers, content=r.content
                        )
                    )
                    await answer.aread()
                    answers.append(answer)
                return answers
            finally:
                await transport.aclose()

    return asyncio.run(scenario())


def test_answer_is_streamed_and_decoded_by_httpx() -> None:
    """A gzip body read through httpx arrives decoded, with the server's status, reason and headers."""
    body = b'{"status":"0","data":[' + b",".join([b"1"] * 5000) + b"]}"

    async def handler(_: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(body),
            status=202,
            reason="Accepted For Now",
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json", "X-Extra": "1"},
        )

    [response] = exchange(handler, httpx.Request("GET", "/data"))
    assert response.content == body
    assert (response.status_code, response.reason_phrase) == (202, "Accepted For Now")
    assert response.headers["X-Extra"] == "1"
    assert response.http_version == "HTTP/1.1"


def test_cookies_are_not_kept_and_redirects_not_followed() -> None:
    """Each request carries only its own headers; a redirect is an answer, not a second request."""
    seen: list[tuple[str, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Cookie")))
        if request.path == "/first":
            return web.Response(status=302, headers={"Location": "/second", "Set-Cookie": "session=abc"})
        return web.Response(text="second")

    # A host name, not an IP address: cookie jars ignore cookies set by IP addresses anyway.
    answers = exchange(
        handler, httpx.Request("GET", "/first"), httpx.Request("GET", "/second"), host="localhost"
    )
    assert [answer.status_code for answer in answers] == [302, 200]
    assert seen == [("/first", None), ("/second", None)]


def test_request_headers_and_body_are_sent() -> None:
    async def handler(request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        return web.json_response({"sign": request.headers.get("Sign"), "body": body})

    [answer] = exchange(handler, httpx.Request("POST", "/echo", headers={"Sign": "abc"}, content=b"hello"))
    assert answer.json() == {"sign": "abc", "body": "hello"}


def test_a_closed_transport_can_be_used_again() -> None:
    """Closing releases the connections; a later request opens a new pool rather than failing."""

    async def handler(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def scenario() -> list[str]:
        app = web.Application()
        app.router.add_get("/", handler)
        async with serving(app) as base_url:
            transport = AiohttpTransport(max_connections=1)
            texts = [(await get(transport, f"{base_url}/")).text]
            await transport.aclose()
            texts.append((await get(transport, f"{base_url}/")).text)
            await transport.aclose()
            return texts

    assert asyncio.run(scenario()) == ["ok", "ok"]


def test_untrusted_certificate_fails_the_request_saying_why(tmp_path: Path) -> None:
    """Through the API client, the certificate problem is named in the flow's error."""

    async def scenario() -> None:
        async with serving(web.Application(), self_signed(tmp_path)) as base_url:
            client = FlowApiClient(f"{base_url}/otp", "key", SecretStr("a-long-secret"), retries=0)
            async with client:
                await client.flow_details(4)

    with pytest.raises(TransientError) as caught:
        asyncio.run(scenario())
    assert caught.value.kind == "network"
    assert "flow 4: connection failed" in str(caught.value)
    assert "certificate verify failed" in str(caught.value)
