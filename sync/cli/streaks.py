"""Repeated errors, grouped for reading: `flow 9: api error -22, 41 times since 2026-11-20 10:05`.

A flow that the API keeps refusing adds an `error` row at every run. The history table shows
a streak of identical errors of one flow (same kind, code and message, with no other event
of that flow between them) as one row, at the place of its newest error. The rows stay in the
database as they are, and `--format json|csv` still gives one record per row.

Pure: it takes the events newest first, a page at a time, and reads only as many pages as it
needs to close the streaks it shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sync.store.reports import Corrupt, HistoryEntry
from sync.vocabulary import Event


@dataclass(slots=True)
class Grouped:
    """One shown row: an event, or the newest of `count` identical errors, the oldest at `since`."""

    newest: HistoryEntry
    count: int = 1
    since: datetime | Corrupt | None = None


def _key(entry: HistoryEntry) -> tuple[object, ...] | None:
    """What makes two errors identical; None for an event that never joins a streak."""
    if entry.event != Event.ERROR or entry.flow_id is None or entry.problems():
        return None
    return (entry.flow_id, entry.error_kind, entry.error_code, entry.error_message)


StreakExtent = Callable[[HistoryEntry], tuple[int, datetime | Corrupt | None]]
"""For the newest error of a streak: how many identical errors it has and when the first was."""


def group_streaks(
    pages: Iterable[list[HistoryEntry]], limit: int | None, extent: StreakExtent | None = None
) -> list[Grouped]:
    """The first `limit` rows (all with None) once identical consecutive errors of a flow are grouped.

    A group stays open while the events read so far end (going back in time) in it; it closes at
    the flow's next older event that differs. Without `extent`, reading goes on until the first
    `limit` rows are closed. With it, reading stops at `limit` rows and `extent` counts each streak
    still open among them (the store does that in one query, instead of reading a long streak).
    """
    rows: list[Grouped] = []
    open_by_flow: dict[int, int] = {}  # flow -> index in rows of its open streak
    for page in pages:
        for entry in page:
            key = _key(entry)
            if entry.flow_id is not None and entry.flow_id in open_by_flow:
                index = open_by_flow[entry.flow_id]
                if key is not None and _key(rows[index].newest) == key:
                    rows[index].count += 1
                    rows[index].since = entry.occurred_at
                    continue
                del open_by_flow[entry.flow_id]
            rows.append(Grouped(entry, since=entry.occurred_at))
            if key is not None and entry.flow_id is not None:
                open_by_flow[entry.flow_id] = len(rows) - 1
        if limit is not None and _enough(rows, limit, open_by_flow, counted=extent is not None):
            break
    shown = rows if limit is None else rows[:limit]
    if extent is not None and limit is not None:
        for index in open_by_flow.values():
            if index < len(shown):
                shown[index].count, shown[index].since = extent(shown[index].newest)
    return shown


def _enough(rows: list[Grouped], limit: int, open_by_flow: dict[int, int], *, counted: bool) -> bool:
    """Whether the first `limit` rows are all read: each one closed, or open streaks counted elsewhere."""
    return len(rows) >= limit and (counted or all(index >= limit for index in open_by_flow.values()))
