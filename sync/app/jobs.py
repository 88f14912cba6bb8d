"""One sync job: settings in, a checked database, a locked run and a report out.

The CLI, the worker and the demo all come through here, so every way of running a sync
checks the schema, takes the run lock, and wires the vendor API client (the run's source)
and the SQL store (its sink) to the run loop the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
from sqlalchemy.engine import Engine

from sync.app.metrics import SyncMetrics
from sync.app.notify import DELIVERY_BUDGET_S, MAX_LINES, alert_body, deliver, where, worth_notifying
from sync.app.settings import SETTINGS, ApiSettings, Settings
from sync.errors import ConfigError, StoreError
from sync.pipeline.loop import DeletionGuard, RunReport, run_sync
from sync.pipeline.ports import Progress
from sync.pipeline.stop import StopRequest
from sync.store.database import check_schema, create_engine
from sync.store.health import HealthFacts, read_health
from sync.store.prune import PruneCounts, prune
from sync.store.run_lock import run_lock
from sync.store.run_summary import record_alert, summarize
from sync.store.schema import SCHEMA_REVISIONS
from sync.store.sink import SqlResultSink
from sync.vendor.client import Backoff, FlowApiClient
from sync.vendor.source import ApiFlowSource
from sync.vocabulary import AlertStatus, Trigger

log = logging.getLogger(__name__)

DOCUMENTED_BASE_URL: str = Settings.model_fields["base_url"].default  # https://api.itniotech.com/otp


@contextmanager
def database(settings: Settings) -> Iterator[Engine]:
    """An engine for the configured database, disposed of afterwards."""
    engine = create_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def check_ready(engine: Engine) -> None:
    """`SchemaError` unless the database is exactly at this flowsync's latest migration."""
    check_schema(engine, {SCHEMA_REVISIONS[-1]}, set(SCHEMA_REVISIONS))


@contextmanager
def served_metrics(settings: Settings) -> Iterator[SyncMetrics | None]:
    """The worker's metrics, served on `metrics_port` while the block runs (None without a port)."""
    if settings.metrics_port is None:
        yield None
        return
    metrics = SyncMetrics(count_runs=True)
    try:
        server = metrics.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        where = f"{settings.metrics_host}:{settings.metrics_port}"
        raise ConfigError(
            settings.source("metrics_port"), f"cannot listen on {where} ({exc.strerror})"
        ) from exc
    log.info("serving metrics on http://%s:%d/metrics", settings.metrics_host, server.port)
    try:
        yield metrics
    finally:
        server.close()


def health_facts(engine: Engine) -> HealthFacts:
    """What `flowsync check` judges: the latest runs and the flows failing now."""
    return read_health(engine)


PRUNE_LOCK_WAIT_S = 60.0


def prune_history(
    engine: Engine,
    before: datetime,
    *,
    dry_run: bool = False,
    lock_wait_s: float = PRUNE_LOCK_WAIT_S,
    on_wait: Callable[[], None] = lambda: None,
) -> PruneCounts:
    """`flowsync prune`: error events and unreferenced runs older than `before`, under the run lock.

    A prune waits up to `lock_wait_s` for a sync in progress (calling `on_wait` once if it has to),
    so that it never decides what is unreferenced while a run writes. A dry run only reads, and
    takes no lock.
    """
    check_ready(engine)
    if dry_run:
        return prune(engine, before, dry_run=True)
    with run_lock(engine, wait_s=lock_wait_s, on_wait=on_wait):
        return prune(engine, before)


def utc_now() -> datetime:
    return datetime.now(UTC)


def sync_once(
    settings: Settings,
    api: ApiSettings,
    engine: Engine,
    *,
    triggered_by: Trigger,
    stop: StopRequest | None = None,
    progress: Progress | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    backoff: Backoff | None = None,
    guard: DeletionGuard | None = None,
    clock: Callable[[], datetime] = utc_now,
    metrics: SyncMetrics | None = None,
    notify_budget_s: float = DELIVERY_BUDGET_S,
) -> RunReport:
    """One complete run: check the schema, take the lock, fetch and write, release; then tell the
    metrics and send a change alert, as the settings ask.

    `api` is what `settings.require_api()` returned when the command started: a worker checks
    it once, not at every run. A worker passes its `metrics`, which it serves; otherwise metrics
    are made for the run when `metrics_file` is set.
    """
    report = _locked_run(
        settings,
        api,
        engine,
        triggered_by=triggered_by,
        stop=stop,
        progress=progress,
        transport=transport,
        backoff=backoff,
        guard=guard,
        clock=clock,
    )
    # After the lock is released: a slow webhook must not keep the next run waiting.
    _tell_metrics(settings, engine, report, metrics)
    if settings.notify_url:
        _send_alert(settings.notify_url, engine, report, notify_budget_s)
    return report


def _locked_run(
    settings: Settings,
    api: ApiSettings,
    engine: Engine,
    *,
    triggered_by: Trigger,
    stop: StopRequest | None,
    progress: Progress | None,
    transport: httpx.AsyncBaseTransport | None,
    backoff: Backoff | None,
    guard: DeletionGuard | None,
    clock: Callable[[], datetime],
) -> RunReport:
    _warn_if_plaintext(settings.base_url)
    check_ready(engine)
    with run_lock(engine) as lock:

        async def fetch_and_write() -> RunReport:
            async with FlowApiClient(
                settings.base_url,
                api.api_key,
                api.api_secret,
                timeout_s=settings.timeout_s,
                retries=settings.retries,
                max_connections=settings.concurrency,
                max_details_bytes=settings.max_details_bytes,
                max_listing_bytes=settings.max_listing_bytes,
                transport=transport,
                backoff=backoff,
            ) as client:
                return await run_sync(
                    ApiFlowSource(client),
                    SqlResultSink(engine, lock, settings.chain),
                    api.flow_ids,
                    triggered_by=triggered_by,
                    concurrency=settings.concurrency,
                    clock=clock,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    stop=stop,
                    progress=progress,
                    guard=guard,
                    not_found_hint=wrong_base_url_hint(settings),
                )

        return asyncio.run(fetch_and_write())


def wrong_base_url_hint(settings: Settings) -> str:
    """What to check when every request is answered HTTP 404: the base URL, most likely its path.

    The URL itself is not quoted (it may hold a password); its path is, which cannot.
    """
    source = settings.source("base_url")
    setting = SETTINGS["base_url"].env if source == "default" else source
    if source not in ("default", SETTINGS["base_url"].env):
        setting = f"{setting}, or {SETTINGS['base_url'].env}"
    path = httpx.URL(settings.base_url).path or "/"
    documented = httpx.URL(DOCUMENTED_BASE_URL).path
    if path.endswith(documented):
        return f"check the API base URL ({setting}): its path ends in {documented}, so is its host the API's?"
    return (
        f"check the API base URL ({setting}): the documented base ends in {documented} "
        f"({DOCUMENTED_BASE_URL}), and this one's path is {path}"
    )


def _tell_metrics(settings: Settings, engine: Engine, report: RunReport, metrics: SyncMetrics | None) -> None:
    """Set the metrics from what the run recorded, and write the file; a failure here is only logged."""
    if metrics is None and settings.metrics_file is None:
        return
    metrics = metrics or SyncMetrics()
    try:
        metrics.observe(read_health(engine, report.run_id))
        if settings.metrics_file is not None:
            metrics.write(settings.metrics_file)
    except StoreError as exc:
        log.error("run %d: the metrics could not be read from the database: %s", report.run_id, exc)
    except OSError as exc:
        log.error(
            "run %d: the metrics file %s could not be written: %s", report.run_id, settings.metrics_file, exc
        )


def _send_alert(url: str, engine: Engine, report: RunReport, budget_s: float) -> None:
    """A change alert when the run changed flows or its status differs from the previous run's."""
    try:
        summary = summarize(engine, report.run_id, max_lines=MAX_LINES)
    except StoreError as exc:
        log.error("run %d: no change alert: the run could not be read back: %s", report.run_id, exc)
        return
    if summary is None or not worth_notifying(summary):
        return
    delivery = deliver(url, alert_body(summary), budget_s=budget_s)
    if delivery.delivered:
        log.info("run %d: change alert sent to %s", report.run_id, where(url))
        outcome, reason = AlertStatus.SENT, None
    else:
        # The receiver's URL may carry a token in its path: only its host is named.
        reason = f"{delivery.error or 'not delivered'} after {delivery.attempts} attempt(s) to {where(url)}"
        log.error("run %d: the change alert failed: %s", report.run_id, reason)
        outcome = AlertStatus.FAILED
    try:
        record_alert(engine, report.run_id, outcome, reason)
    except StoreError as exc:
        log.error("run %d: the change alert's outcome could not be recorded: %s", report.run_id, exc)


def _warn_if_plaintext(base_url: str) -> None:
    """Plain HTTP is fine on loopback (the simulator); anywhere else the Sign could be replayed."""
    url = httpx.URL(base_url)
    if url.scheme == "http" and url.host not in ("localhost", "127.0.0.1", "::1"):
        log.warning(
            "the API base URL %s is plain HTTP: requests and their signatures travel unencrypted", url
        )
