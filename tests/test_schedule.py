"""When the worker runs: crontab expressions with cron's meaning in UTC, or a fixed interval.

`now` is always an argument, so every case is a row in a table and nothing waits for the clock.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sync.app.schedule import crontab_trigger, next_runs, translate_weekday, worker_trigger

NOW = datetime(2024, 1, 3, 10, 17, 30, tzinfo=UTC)  # a Wednesday


def at(*texts: str) -> list[datetime]:
    """UTC datetimes from `YYYY-MM-DD HH:MM` texts."""
    return [datetime.fromisoformat(text).replace(tzinfo=UTC) for text in texts]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("* * * * *", at("2024-01-03 10:18", "2024-01-03 10:19", "2024-01-03 10:20")),
        ("*/15 * * * *", at("2024-01-03 10:30", "2024-01-03 10:45", "2024-01-03 11:00")),
        ("17 10 * * *", at("2024-01-04 10:17", "2024-01-05 10:17", "2024-01-06 10:17")),
        ("0 9,17 * * *", at("2024-01-03 17:00", "2024-01-04 09:00", "2024-01-04 17:00")),
        ("0 9 * * 0", at("2024-01-07 09:00", "2024-01-14 09:00", "2024-01-21 09:00")),
        ("0 9 * * 7", at("2024-01-07 09:00", "2024-01-14 09:00", "2024-01-21 09:00")),
        ("0 9 * * 1-5", at("2024-01-04 09:00", "2024-01-05 09:00", "2024-01-08 09:00")),
        ("0 9 * * mon-fri", at("2024-01-04 09:00", "2024-01-05 09:00", "2024-01-08 09:00")),
        ("0 0 * * SUN", at("2024-01-07 00:00", "2024-01-14 00:00", "2024-01-21 00:00")),
        ("30 6 * * mon,wed", at("2024-01-08 06:30", "2024-01-10 06:30", "2024-01-15 06:30")),
        ("0 12 * * 5-7", at("2024-01-05 12:00", "2024-01-06 12:00", "2024-01-07 12:00", "2024-01-12 12:00")),
        ("0 0 * * */2", at("2024-01-04 00:00", "2024-01-06 00:00", "2024-01-07 00:00", "2024-01-09 00:00")),
        ("0 0 * * 1/2", at("2024-01-05 00:00", "2024-01-08 00:00", "2024-01-10 00:00")),
        ("0 0 ? * 1", at("2024-01-08 00:00", "2024-01-15 00:00", "2024-01-22 00:00")),
        ("0 12 1 * *", at("2024-02-01 12:00", "2024-03-01 12:00", "2024-04-01 12:00")),
        ("0 0 1 jan *", at("2025-01-01 00:00", "2026-01-01 00:00", "2027-01-01 00:00")),
        ("0 0 29 2 *", at("2024-02-29 00:00", "2028-02-29 00:00")),
    ],
)
def test_next_fire_times(expression: str, expected: list[datetime]) -> None:
    """Fire times follow cron: weekday 0 and 7 are Sunday, 1-5 Monday to Friday, */2 Sun/Tue/Thu/Sat."""
    assert next_runs(crontab_trigger(expression), NOW, len(expected)) == expected


def test_fire_times_are_utc_whatever_the_zone_of_now() -> None:
    """The expression is read in UTC: a `now` in another zone gives the same instants, in UTC."""
    elsewhere = NOW.astimezone(timezone(timedelta(hours=5, minutes=30)))
    runs = next_runs(crontab_trigger("0 9 * * 1-5"), elsewhere, 2)
    assert runs == at("2024-01-04 09:00", "2024-01-05 09:00")
    assert all(run.utcoffset() == timedelta(0) for run in runs)


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("*", "*"),
        ("?", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("0,7", "sun"),
        ("1", "mon"),
        ("6", "sat"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0-6", "sun,mon,tue,wed,thu,fri,sat"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1/2", "mon,wed,fri"),
        ("1-7/3", "sun,mon,thu"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("SAT,sun", "sun,sat"),
        (" Tue ", "tue"),
    ],
)
def test_translate_weekday(field: str, days: str) -> None:
    """Cron's day-of-week field becomes APScheduler day names with cron's numbering (0 and 7 are Sunday)."""
    assert translate_weekday(field) == days


@pytest.mark.parametrize(
    ("field", "complaint"),
    [
        ("8", "'8' is not 0-7"),
        ("5-3", "ends before it starts"),
        ("fri-mon", "ends before it starts"),
        ("x", "'x'"),
        ("monday", "'monday'"),
        ("-1", "'-1'"),
        ("mon-", "'mon-'"),
        ("1,,2", "''"),
        ("1-5/0", "at least 1"),
        ("mon#1", "'mon#1'"),
    ],
)
def test_translate_weekday_refuses_what_cron_would_not_read(field: str, complaint: str) -> None:
    """A day-of-week outside 0-7 and the day names, a reversed range or a zero step is a ValueError."""
    with pytest.raises(ValueError, match=complaint):
        translate_weekday(field)


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("", "expected 5 fields"),
        ("* * * *", "expected 5 fields"),
        ("0 * * * * *", "expected 5 fields"),
        ("0 0 1 * 1", "day-of-month and day-of-week"),
        ("0 0 1-7 * mon", "day-of-month and day-of-week"),
        ("0 0 * * 8", "'8'"),
        ("0 0 * * 5-3", "ends before it starts"),
        ("30-10 * * * *", "range"),
        ("60 * * * *", "60"),
        ("0 24 * * *", "24"),
        ("0 0 0 * *", "0"),
        ("0 0 32 * *", "32"),
        ("0 0 * 13 *", "13"),
        ("0 0 L * *", "L"),
        ("every minute", "expected 5 fields"),
    ],
)
def test_invalid_crontab_expressions_raise_value_error(expression: str, complaint: str) -> None:
    """Malformed expressions, and ones restricting both day fields (cron ORs them), are refused."""
    with pytest.raises(ValueError, match=complaint):
        crontab_trigger(expression)


def gaps(runs: list[datetime]) -> list[timedelta]:
    return [later - earlier for earlier, later in itertools.pairwise(runs)]


def test_without_cron_the_worker_fires_every_interval() -> None:
    """`worker_trigger(300, None)` fires 300 s after it is made (the worker just ran), then every 300 s."""
    made = datetime.now(UTC)
    runs = next_runs(worker_trigger(300, None), made, 4)
    assert gaps(runs) == [timedelta(seconds=300)] * 3
    assert made + timedelta(seconds=300) <= runs[0] < made + timedelta(seconds=360)


def test_the_interval_grid_continues_from_a_later_now() -> None:
    """Asked from a later moment, the next fire is the next point of the 300 s grid, within 300 s."""
    later = datetime(2100, 6, 1, 0, 0, 1, tzinfo=UTC)
    runs = next_runs(worker_trigger(300, None), later, 3)
    assert gaps(runs) == [timedelta(seconds=300)] * 2
    assert later <= runs[0] <= later + timedelta(seconds=300)


@pytest.mark.parametrize("cron", ["0 9 * * 1-5", "*/10 * * * *"])
def test_cron_replaces_the_interval(cron: str) -> None:
    """When a cron expression is set, the interval is ignored."""
    assert next_runs(worker_trigger(300, cron), NOW, 3) == next_runs(crontab_trigger(cron), NOW, 3)


@pytest.mark.parametrize("cron", [None, ""])
def test_an_unset_or_empty_cron_means_the_interval(cron: str | None) -> None:
    """No cron, or an empty one, leaves the interval in charge (fractions of a second included)."""
    assert gaps(next_runs(worker_trigger(0.5, cron), NOW, 3)) == [timedelta(seconds=0.5)] * 2
