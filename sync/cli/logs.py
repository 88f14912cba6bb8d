"""Logging to stderr: one format for the worker, cron and the terminal.

Two guards sit on the one handler, so that no call site can forget them, in this order:

1. `Redactor`, a filter, masks the API secret in every message, should any code path ever
   put it there: a second line of defence behind `SecretStr`. It reads the message as logged,
   before anything is escaped, so it finds a secret whatever characters the secret holds, and
   it also finds one split by characters a terminal would hide (`abc<ESC>def` reads `abcdef`).
2. `TextFormatter` escapes every control, bidirectional and invisible format character of
   the formatted line (`sync.core.safe_text`), so a vendor's name or reason can neither drive
   the operator's terminal nor forge a line in a cron log: one record is one line, and the
   lines of a traceback that follow it are indented. Escaping belongs to this text format.
   `JsonFormatter` (`--log-format json`, for log pipelines) instead writes one JSON object a
   line with the exact values JSON-encoded (JSON escapes every control character itself):
   `time` (UTC, ISO 8601), `level`, `logger`, `message`, the fields a record carries
   (`run_id`, `counts`, a request's `method`, `path`, `status`, `attempt`, `duration_ms`)
   and `exc_info`, a traceback as one field. The secret is masked in every value.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from sync.core.safe_text import escape_unsafe, is_unsafe

MIN_REDACTED_CHARS = 4
MASK = "***"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What follows a record on lines of its own (a traceback) starts with this, so that every line
# starting at column 0 is a record flowsync wrote.
CONTINUATION = "  "
# Libraries whose own INFO and DEBUG lines would drown the one line per run: alembic narrates
# each migration step, asyncio names its selector at DEBUG. Their warnings still show.
CHATTY_LIBRARIES = ("alembic", "asyncio")

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class Redactor(logging.Filter):
    """Masks the given secrets in every record that passes the handler."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        # A secret of a few characters would turn every log line into asterisks and protect nothing.
        self._secrets = [s for s in secrets if len(s) >= MIN_REDACTED_CHARS]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            masked = mask_secrets(message, self._secrets)
            if masked != message:
                record.msg, record.args = masked, None
        return True


def mask_secrets(message: str, secrets: Sequence[str]) -> str:
    """`message` with each secret replaced by `***`, also where unsafe characters interrupt it."""
    for secret in secrets:
        message = message.replace(secret, MASK)
    if message.isprintable():  # nothing unsafe, so nothing can split a secret
        return message
    # Search the characters a terminal shows, and mask the whole span each match came from.
    kept = [index for index, char in enumerate(message) if not is_unsafe(char)]
    shown = "".join(message[index] for index in kept)
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        start = shown.find(secret)
        while start != -1:
            spans.append((kept[start], kept[start + len(secret) - 1] + 1))
            start = shown.find(secret, start + 1)
    for begin, end in reversed(_merged(spans)):
        message = message[:begin] + MASK + message[end:]
    return message


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((begin, end))
    return merged


class TextFormatter(logging.Formatter):
    """The text log format: UTC timestamps, one record a line, every unsafe character escaped.

    A traceback is not part of the message the `Redactor` sees, so the secret is masked here too.
    """

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime
        self._secrets = [s for s in secrets if len(s) >= MIN_REDACTED_CHARS]

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_unsafe(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        return self._continuation(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self._continuation(super().formatStack(stack_info))

    def _continuation(self, text: str) -> str:
        text = mask_secrets(text, self._secrets)
        return "\n".join(CONTINUATION + escape_unsafe(line) for line in text.split("\n"))


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object a line (python-json-logger), the secret masked in every value."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
        self._secrets = [s for s in secrets if len(s) >= MIN_REDACTED_CHARS]

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if not self._secrets:
            return log_data
        return {key: self._masked(value) for key, value in log_data.items()}

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return mask_secrets(value, self._secrets)
        if isinstance(value, dict):
            return {key: self._masked(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._masked(item) for item in value]
        return value


def configure_logging(verbosity: int, secrets: Sequence[str] = (), log_format: str = "text") -> None:
    """INFO by default, DEBUG with -v, WARNING with -q; text lines, or JSON objects, on stderr."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if log_format == "json" else TextFormatter(secrets))
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
    # APScheduler warns on every fire time that joins a waiting run; the worker reports what matters.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if verbosity > 0 else logging.ERROR)
