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

from sync.app.settings import ApiSettings, Settings
from sync.pipeline.loop import DeletionGuard, RunReport, run_sync
from sync.pipeline.ports import Progress
from sync.pipeline.stop import StopRequest
from sync.store.database import check_schema, create_engine
from sync.store.health import HealthFacts, read_health
from sync.store.run_lock import run_lock
from sync.store.schema import SCHEMA_REVISIONS
from sync.store.sink import SqlResultSink
from sync.vendor.client import Backoff, FlowApiClient
from sync.vendor.source import ApiFlowSource
from sync.vocabulary import Trigger

log = logging.getLogger(__name__)


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


def health_facts(engine: Engine) -> HealthFacts:
    """What `flowsync check` judges: the latest runs and the flows failing now."""
    return read_health(engine)


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
) -> RunReport:
    """One complete run: check the schema, take the lock, fetch and write, release.

    `api` is what `settings.require_api()` returned when the command started: a worker checks
    it once, not at every run.
    """
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
                transport=transport,
                backoff=backoff,
            ) as client:
                return await run_sync(
                    ApiFlowSource(client),
                    SqlResultSink(engine, lock),
                    api.flow_ids,
                    triggered_by=triggered_by,
                    concurrency=settings.concurrency,
                    clock=clock,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    stop=stop,
                    progress=progress,
                    guard=guard,
                )

        return asyncio.run(fetch_and_write())


def _warn_if_plaintext(base_url: str) -> None:
    """Plain HTTP is fine on loopback (the simulator); anywhere else the Sign could be replayed."""
    url = httpx.URL(base_url)
    if url.scheme == "http" and url.host not in ("localhost", "127.0.0.1", "::1"):
        log.warning(
            "the API base URL %s is plain HTTP: requests and their signatures travel unencrypted", url
        )
