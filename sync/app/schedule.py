"""When the worker runs: a fixed interval, or a 5-field crontab expression in UTC.

APScheduler's `CronTrigger.from_crontab` reads day-of-week `0` as Monday, where
cron reads it as Sunday (agronholm/apscheduler#286), and it ANDs day-of-month with
day-of-week where cron ORs them. So the day-of-week field is translated here into
day names with cron's meaning, and an expression restricting both day fields is
refused rather than run on days the operator did not mean.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_ITEM = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


def crontab_trigger(expression: str) -> CronTrigger:
    """A UTC trigger for a 5-field crontab expression with cron's meaning; `ValueError` if invalid."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    if day not in ("*", "?") and weekday not in ("*", "?"):
        raise ValueError(
            "restricting both day-of-month and day-of-week is not supported "
            "(cron runs when either matches); restrict only one of them"
        )
    return CronTrigger(
        minute=minute,
        hour=hour,
        day="*" if day == "?" else day,
        month=month,
        day_of_week=translate_weekday(weekday),
        timezone=UTC,
    )


def translate_weekday(field: str) -> str:
    """Cron's day-of-week field (0 and 7 are Sunday) as APScheduler day names."""
    field = field.strip().lower()
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        match = _DAY_ITEM.match(item)
        if not match:
            raise ValueError(f"day-of-week {item!r} is not valid")
        span, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"day-of-week step in {item!r} must be at least 1")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            first, last = span.split("-")
            low, high = _day_number(first), _day_number(last)
            if high < low:
                raise ValueError(f"day-of-week range {item!r} ends before it starts")
        else:
            low = _day_number(span)
            high = 6 if step_text else low
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(DAY_NAMES[day] for day in sorted(days))


def _day_number(token: str) -> int:
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(f"day-of-week {token!r} is not 0-7 or a day name")


def worker_trigger(interval_s: float, cron: str | None) -> BaseTrigger:
    """The cron expression when set, otherwise the interval."""
    if cron:
        return crontab_trigger(cron)
    return IntervalTrigger(seconds=interval_s, timezone=UTC)


def next_runs(trigger: BaseTrigger, now: datetime, count: int) -> list[datetime]:
    """The next `count` fire times at or after `now` (for tests and for the worker's start-up log line)."""
    times: list[datetime] = []
    previous: datetime | None = None
    current = now
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, current)
        if fire is None:
            break
        times.append(fire)
        # Cron triggers answer "at or after now": step past the fire time just found.
        previous, current = fire, fire + timedelta(microseconds=1)
    return times
