"""Stand-ins for a hostile vendor API, on loopback.

The simulator plays by the API's rules; these servers play by none. `hostile_api` gives every
request the same JSON answer, so that tests can feed flowsync text no honest vendor would send
(markup, escape sequences, forged log lines); `hostile_server` sends whatever bytes and headers
a test chooses for each path, for as long as it chooses (bombs, endless bodies).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def hostile_api(answer: dict[str, Any]) -> Iterator[str]:
    """Serve `answer` as JSON with HTTP 200 on loopback; yields the base URL."""
    body = json.dumps(answer).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads flowsync's output, not the server's."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="hostile-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/otp"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class RawAnswer:
    """One HTTP answer as bytes: `body` is sent chunk by chunk, as long as it goes on and the client stays."""

    body: Iterable[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


@contextmanager
def hostile_server(answer_for: Callable[[str], RawAnswer]) -> Iterator[str]:
    """Serve `answer_for(path)` to every request on loopback; yields the base URL.

    A body without end is sent until the client leaves or the server stops, so a test can serve
    gigabytes, or an endless stream, without holding them: only the chunk being written exists.
    """
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = answer_for(self.path)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                for chunk in answer.body:
                    if stopping.is_set():
                        break
                    self.wfile.write(chunk)
            except OSError:
                return  # the client left, as it should when it has read enough

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads flowsync's output, not the server's."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="hostile-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/otp"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
