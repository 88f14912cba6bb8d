"""Logging to stderr: one format for the worker, cron and the terminal.

A redacting filter on the handler replaces the API secret, should any code path
ever put it into a message, as a second line of defence behind `SecretStr`.
"""

from __future__ import annotations

import logging
import sys
import time

MIN_REDACTED_CHARS = 4
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Redactor(logging.Filter):
    """Masks the given secrets in every record that passes the handler."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # A secret of a few characters would turn every log line into asterisks and protect nothing.
        self._secrets = [s for s in secrets if len(s) >= MIN_REDACTED_CHARS]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            if any(secret in message for secret in self._secrets):
                for secret in self._secrets:
                    message = message.replace(secret, "***")
                record.msg, record.args = message, None
        return True


def configure_logging(verbosity: int, secrets: list[str] | None = None) -> None:
    """INFO by default, DEBUG with -v, WARNING with -q; timestamps in UTC."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(Redactor(secrets or []))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Request lines from httpx would drown the one line per run.
    for noisy in ("httpx", "httpcore", "alembic", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # APScheduler warns on every fire time that joins a waiting run; the worker reports what matters.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if verbosity > 0 else logging.ERROR)
