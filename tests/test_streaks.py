"""Grouping identical consecutive errors of one flow for the history table, on plain events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.cli.streaks import Grouped, group_streaks
from sync.cli.wording import describe_row
from sync.store.reports import Corrupt, HistoryEntry

START = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)


def event(number: int, flow_id: int | None, kind: str = "error", **columns: Any) -> HistoryEntry:
    """Event `number` (later numbers are newer), an `api -22` error unless told otherwise."""
    values: dict[str, Any] = {
        "id": number,
        "occurred_at": START + timedelta(minutes=5 * number),
        "run_id": number,
        "flow_id": flow_id,
        "event": kind,
        "changes": [] if kind == "changed" else None,
        "snapshot": None,
        "error_kind": "api" if kind == "error" else None,
        "error_code": "-22" if kind == "error" else None,
        "error_message": "API status -22 (parameter error)" if kind == "error" else None,
        "current_name": None,
    }
    values.update(columns)
    return HistoryEntry(**values)


def newest_first(*events: HistoryEntry) -> list[HistoryEntry]:
    return sorted(events, key=lambda e: -e.id)


def shape(rows: list[Grouped]) -> list[tuple[int, int]]:
    """Each shown row as (id of its newest event, how many events it stands for)."""
    return [(row.newest.id, row.count) for row in rows]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([event(n, 9) for n in range(1, 6)], [(5, 5)], id="one-streak"),
        pytest.param(
            [event(1, 9), event(2, 7), event(3, 9), event(4, 7), event(5, 9)],
            [(5, 3), (4, 2)],
            id="interleaved-flows-each-one-row",
        ),
        pytest.param(
            [event(1, 9), event(2, 9), event(3, 9, "changed"), event(4, 9), event(5, 9)],
            [(5, 2), (3, 1), (2, 2)],
            id="another-event-of-the-flow-ends-it",
        ),
        pytest.param(
            [event(1, 9), event(2, 9, error_code="-18"), event(3, 9)],
            [(3, 1), (2, 1), (1, 1)],
            id="a-different-code-is-not-identical",
        ),
        pytest.param(
            [event(1, 9), event(2, 9, error_message="other"), event(3, 9)],
            [(3, 1), (2, 1), (1, 1)],
            id="a-different-message-is-not-identical",
        ),
        pytest.param([event(1, None), event(2, None)], [(2, 1), (1, 1)], id="account-errors-stay-apart"),
        pytest.param(
            [event(1, 9), event(2, 9, occurred_at=Corrupt("is not a timestamp")), event(3, 9)],
            [(3, 1), (2, 1), (1, 1)],
            id="a-corrupt-row-stays-apart",
        ),
    ],
)
def test_group_streaks(events: list[HistoryEntry], expected: list[tuple[int, int]]) -> None:
    """Identical errors of one flow with no other event of it between them are one row at the newest."""
    assert shape(group_streaks([newest_first(*events)], None)) == expected


def test_a_streak_reads_past_the_limit_until_it_closes() -> None:
    """With `limit` 1 the first row still counts every error of its streak, over several pages."""
    events = newest_first(event(1, 9, "created"), *(event(n, 9) for n in range(2, 12)), event(12, 7))
    pages_read = 0

    def pages() -> Iterator[list[HistoryEntry]]:
        nonlocal pages_read
        for start in range(0, len(events), 3):
            pages_read += 1
            yield events[start : start + 3]

    rows = group_streaks(pages(), 2)
    assert shape(rows) == [(12, 1), (11, 10)]
    assert rows[1].since == START + timedelta(minutes=10)
    assert pages_read == 4  # the page with the `created` event closes the streak; nothing after is read


def test_a_streak_reads_as_one_line() -> None:
    """`flow 9: api error -22, 41 times since 2026-11-20 10:05: reason`."""
    row = Grouped(event(50, 9), count=41, since=START)
    assert describe_row(row) == [
        "flow 9: api error -22, 41 times since 2026-11-20 10:05: API status -22 (parameter error)"
    ]


def test_with_a_counter_reading_stops_at_the_limit_and_open_streaks_are_counted_by_it() -> None:
    """The store counts a streak still open at the limit in one query; no further page is read."""
    events = newest_first(*(event(n, 9) for n in range(1, 10)), event(10, 7, "changed"))
    pages_read = 0
    asked: list[int] = []

    def pages() -> Iterator[list[HistoryEntry]]:
        nonlocal pages_read
        for start in range(0, len(events), 3):
            pages_read += 1
            yield events[start : start + 3]

    def extent(newest: HistoryEntry) -> tuple[int, datetime | Corrupt | None]:
        asked.append(newest.id)
        return 41, START

    rows = group_streaks(pages(), 2, extent)
    assert [(row.newest.id, row.count, row.since) for row in rows] == [(10, 1, rows[0].since), (9, 41, START)]
    assert (pages_read, asked) == (1, [9])
