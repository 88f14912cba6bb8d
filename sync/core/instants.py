"""Instants typed by an operator (`--as-of`): ISO 8601, UTC when no offset is given.

A date alone (`2026-11-24`) means the start of that UTC day. Pure, so the accepted forms
are a table in the tests.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_instant(text: str) -> datetime:
    """An aware UTC datetime from `2026-11-24`, `2026-11-24 12:00`, `2026-11-24T12:00:00+02:00`, `...Z`.

    `ValueError` says what is expected when the text is not one of those forms.
    """
    cleaned = text.strip()
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date or time (for example 2026-11-24 or "
            "2026-11-24T12:00:00, UTC unless an offset such as +02:00 is given)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
