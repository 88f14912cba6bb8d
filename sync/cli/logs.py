"""Logging to stderr: one format for the worker, cron and the terminal.

Two guards sit on the one handler, so that no call site can forget them, in this order:

1. `Redactor`, a filter, masks the API secret in every message, should any code path ever
   put it there: a second line of defence behind `SecretStr`. It reads the message as logged,
   before anything is escaped, so it finds a secret whatever characters the secret holds, and
   it also finds one split by characters a terminal would hide (`abc<ESC>def` reads `abcdef`).
2. `TextFormatter` escapes every control, bidirectional and invisible format character of
   the formatted line (`sync.core.safe_text`), so a vendor's name or reason can neither drive
   the operator's terminal nor forge a line in a cron log: one record is one line, and the
   lines of a traceback that follow it are indented. Escaping belongs to this text format;
   a structured format would encode the exact value instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from types import TracebackType

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
    """The text log format: UTC timestamps, one record a line, every unsafe character escaped."""

    def __init__(self) -> None:
        super().__init__(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_unsafe(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:
        return _continuation(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _continuation(super().formatStack(stack_info))


def _continuation(text: str) -> str:
    return "\n".join(CONTINUATION + escape_unsafe(line) for line in text.split("\n"))


def configure_logging(verbosity: int, secrets: Sequence[str] = ()) -> None:
    """INFO by default, DEBUG with -v, WARNING with -q; text lines on stderr."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter())
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
