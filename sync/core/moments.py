"""Moments an operator types on the command line: a day or an ISO 8601 timestamp, read as UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_moment(text: str) -> datetime:
    """`YYYY-MM-DD` (midnight UTC) or an ISO 8601 timestamp (UTC when it has no offset), as aware UTC.

    `ValueError` says what was expected. A bare day is checked to be exactly `YYYY-MM-DD`, so
    that `2026-1-5` or `20260105` is refused rather than read some other way.
    """
    value = text.strip()
    if not value:
        raise ValueError("expected YYYY-MM-DD or an ISO 8601 timestamp, got nothing")
    if "T" not in value.upper() and " " not in value and not _DAY.fullmatch(value):
        raise ValueError(f"expected YYYY-MM-DD or an ISO 8601 timestamp, got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected YYYY-MM-DD or an ISO 8601 timestamp, got {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
