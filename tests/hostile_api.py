"""A stand-in for a hostile vendor API: every request gets the same answer, whatever it asks.

The simulator plays by the API's rules; this server plays by none, so that tests can feed
flowsync text no honest vendor would send (markup, escape sequences, forged log lines).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
