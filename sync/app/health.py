"""`flowsync check`: whether the sync is healthy, from facts read off the database. Pure.

Healthy means a run succeeded (finished `ok` or `partial`) recently enough, and not too many
flows failed in it (every run fetches every requested flow, so that is how many are failing
now, flows never stored included). The verdict is one line a monitor can show as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from sync.store.health import HealthFacts


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    reason: str


def evaluate(facts: HealthFacts, *, now: datetime, max_age_s: float, max_failing: int | None) -> Verdict:
    """Healthy when the latest success is younger than `max_age_s` and at most `max_failing` failed in it."""
    success = facts.latest_success
    if success is None or success.finished_at is None:
        latest = facts.latest_run
        if latest is None:
            return Verdict(False, "no run has been recorded yet")
        return Verdict(
            False,
            f"no run has succeeded yet (latest: run {latest.run_id} {latest.status}"
            + (f": {latest.error_message})" if latest.error_message else ")"),
        )
    age_s = (now - success.finished_at).total_seconds()
    if age_s > max_age_s:
        return Verdict(
            False,
            f"the latest successful run ({success.run_id}) finished {duration(age_s)} ago, "
            f"longer than the {duration(max_age_s)} allowed",
        )
    failed = success.counts.failed
    if max_failing is not None and failed > max_failing:
        return Verdict(
            False, f"{failed} flows failed in run {success.run_id}, more than the {max_failing} allowed"
        )
    failing = f", {failed} flows failed" if failed else ""
    return Verdict(True, f"run {success.run_id} {success.status} {duration(age_s)} ago{failing}")


def default_max_age_s(interval_s: float, cron: str | None, now: datetime) -> float:
    """Three intervals of the schedule; for a cron schedule, three times its longest gap between runs."""
    if not cron:
        return 3 * interval_s
    from sync.app.schedule import crontab_trigger, next_runs  # noqa: PLC0415 - APScheduler only for cron

    times = next_runs(crontab_trigger(cron), now, 200)
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    return 3 * max(gaps, default=interval_s)


def duration(seconds: float) -> str:
    """`42 s`, `5 min 3 s`, `2 h 5 min`, `3 d 4 h`: what a person reads at a glance."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"
