"""httpx's transport interface over one aiohttp connection pool.

flowsync speaks httpx (`httpx.Request` in, `httpx.Response` out, any
`httpx.AsyncBaseTransport` pluggable, `httpx.MockTransport` in tests), but the
bytes travel through aiohttp: httpcore's pool spends milliseconds of CPU per
request once a few connections are in flight (encode/httpx#3215), aiohttp's
does not. This adapter does only what flowsync needs of aiohttp: it hands each
body over as a stream, chunk by chunk as it arrives, and leaves the deadline and
the size to the caller (the API client bounds every exchange as a whole and stops
reading past its cap), so no per-request aiohttp timeout or cookie handling is built.

TLS certificates are always verified, against the same CA bundle httpx uses.
Cookies are neither kept nor sent, redirects are not followed, and a compressed
body is handed over still compressed: `aread()` decodes it as httpx would over its
own transport, and the API client decodes it itself within its cap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx

_HTTP_1_1 = {"http_version": b"HTTP/1.1"}


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session, opened on first use."""

    def __init__(self, *, max_connections: int, connect_timeout_s: float | None = None) -> None:
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # httpx's own TLS settings: certifi's CA bundle (or SSL_CERT_FILE / SSL_CERT_DIR), verified.
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=httpx.create_ssl_context())
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            auto_decompress=False,
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        try:
            answer = await session.request(
                request.method,
                str(request.url),
                headers={
                    name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.raw
                },
                data=request.content or None,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            raise _translated(exc, request) from exc
        extensions = _HTTP_1_1
        if answer.reason:
            extensions = {**_HTTP_1_1, "reason_phrase": answer.reason.encode("latin-1", "replace")}
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            stream=_AnswerBody(answer, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _AnswerBody(httpx.AsyncByteStream):
    """An aiohttp answer's body as httpx reads a stream: raw chunks as they arrive, then closed."""

    def __init__(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._answer.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _translated(exc, self._request) from exc

    async def aclose(self) -> None:
        # A body read to its end returns the connection to the pool; one left unread (refused
        # as too large, or cut by the deadline) closes it, since what follows on it is unknown.
        if self._answer.content.is_eof():
            self._answer.release()
        else:
            self._answer.close()


def _translated(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """aiohttp's errors stop here: everything above this module sees httpx's, with readable text."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error)
        return httpx.ConnectError(f"cannot connect to {exc.host}:{exc.port}: {reason}", request=request)
    if isinstance(exc, aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(_describe(exc), request=request)
    return httpx.ReadError(_describe(exc), request=request)


def _describe(exc: BaseException) -> str:
    """An aiohttp error as one line: its class name, then what it says.

    Not cut here: it may quote what the server sent, and the client masks the request's Sign
    in it before cutting it to length (a Sign cut in half would no longer be found).
    """
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
