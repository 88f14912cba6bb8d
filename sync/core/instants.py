"""Instants an operator types (`show --as-of`, `prune --before`): a day or ISO 8601, read as UTC.

A date alone (`2026-11-24`) means the start of that UTC day. Pure, so the accepted forms
are a table in the tests.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_EXPECTED = "expected YYYY-MM-DD or an ISO 8601 timestamp (UTC unless an offset such as +02:00 is given)"


def parse_instant(text: str) -> datetime:
    """An aware UTC datetime from `2026-11-24`, `2026-11-24 12:00`, `2026-11-24T12:00:00+02:00`, `...Z`.

    `ValueError` says what is expected. A bare day must be exactly `YYYY-MM-DD`, so that
    `2026-1-5` or `20260105` is refused rather than read some other way.
    """
    value = text.strip()
    if not value:
        raise ValueError(f"{_EXPECTED}, got nothing")
    if "T" not in value.upper() and " " not in value and not _DAY.fullmatch(value):
        raise ValueError(f"{_EXPECTED}, got {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{_EXPECTED}, got {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
