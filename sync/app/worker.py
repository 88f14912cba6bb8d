"""The long-running worker: APScheduler runs a sync at start, then on schedule.

One job on one thread, so runs never overlap in this process (the run lock keeps
other processes out). `max_instances=2` lets one run wait behind the running one:
every fire time that passes during a slow run collapses into that single waiting
run, which starts as soon as the slow one ends, rather than being dropped until
the next fire time. `coalesce=True` and `misfire_grace_time=None` do the same for
runs missed while the process was suspended. A failed run is logged and the schedule
goes on. `stop` (set by a stop signal in the CLI) makes the running sync finish
the flows already fetched and return, then the worker exits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from sync.app.schedule import next_runs, worker_trigger
from sync.errors import ConfigError, FlowsyncError, LockHeld, SchemaError
from sync.pipeline.loop import RunReport

log = logging.getLogger(__name__)

JOB_ID = "flowsync-sync"
STOP_POLL_S = 1.0


def run_worker(
    run_once: Callable[[], RunReport],
    *,
    interval_s: float,
    cron: str | None,
    stop: threading.Event,
) -> None:
    """Schedule `run_once` until `stop` is set; returns after the running sync has finished."""
    trigger = worker_trigger(interval_s, cron)
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": None},
    )
    scheduler.add_listener(_on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    scheduler.add_job(
        _guarded(run_once, stop), trigger, id=JOB_ID, name="sync", next_run_time=datetime.now(UTC)
    )
    upcoming = next_runs(trigger, datetime.now(UTC), 1)
    log.info(
        "worker started: %s; first run now, then from %s",
        f"cron {cron!r} (UTC)" if cron else f"every {interval_s:g} s",
        upcoming[0].isoformat() if upcoming else "never",
    )
    scheduler.start()
    try:
        while not stop.wait(STOP_POLL_S):
            pass
        log.info("stop requested: waiting for a run in progress, if any, to record itself")
    finally:
        scheduler.shutdown(wait=True)
    log.info("worker stopped")


def _guarded(run_once: Callable[[], RunReport], stop: threading.Event) -> Callable[[], None]:
    """The scheduled job: a failing run is logged, never allowed to end the schedule."""

    def job() -> None:
        if stop.is_set():
            return
        try:
            run_once()
        except LockHeld as exc:
            log.warning("run skipped: %s", exc)
        except (ConfigError, SchemaError) as exc:
            log.error("run not started: %s", exc)
        except FlowsyncError as exc:
            log.error("run failed: %s", exc)
        except Exception:
            log.exception("run failed unexpectedly; the worker keeps its schedule")

    return job


def _on_job_event(event: JobExecutionEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning("a scheduled run was missed (scheduled for %s)", event.scheduled_run_time)
    elif event.code == EVENT_JOB_MAX_INSTANCES:
        log.debug("a run is already waiting behind the current one; this fire time joins it")
    elif event.exception is not None:
        log.error("the scheduled job raised %s", type(event.exception).__name__)
