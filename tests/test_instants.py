"""The instants `--as-of` accepts: ISO 8601, UTC unless an offset is given, a date alone at midnight UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.core.instants import parse_instant


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
        ("2026-11-24T12:00", datetime(2026, 11, 24, 12, tzinfo=UTC)),
        ("2026-11-24 12:00:00", datetime(2026, 11, 24, 12, tzinfo=UTC)),
        ("2026-11-24T12:00:00.5", datetime(2026, 11, 24, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-24T12:00:00Z", datetime(2026, 11, 24, 12, tzinfo=UTC)),
        ("2026-11-24T14:00:00+02:00", datetime(2026, 11, 24, 12, tzinfo=UTC)),
        (" 2026-11-24T07:00:00-05:00 ", datetime(2026, 11, 24, 12, tzinfo=UTC)),
    ],
)
def test_accepted_forms(text: str, instant: datetime) -> None:
    assert parse_instant(text) == instant
    assert parse_instant(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["", "yesterday", "24/11/2026", "2026-13-01", "2026-11-24T25:00", "2026-1-5", "20261124"]
)
def test_other_text_is_refused_saying_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected YYYY-MM-DD or an ISO 8601 timestamp"):
        parse_instant(text)
