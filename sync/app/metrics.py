"""Prometheus metrics of the sync, from what the database recorded (never counted on the side).

After each run the gauges are set from that run's `sync_runs` row, the latest successful
run and the `flows` table, so they say exactly what `flowsync status` says. A cron run
writes them to a file for node_exporter's textfile collector (atomically: the collector
never reads half a file); the worker serves them on `/metrics` for as long as it runs and
also counts its runs by status.
"""

from __future__ import annotations

import threading
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server, write_to_textfile

from sync.store.health import HealthFacts
from sync.vocabulary import Outcome, RunStatus, SyncState

# The outcomes of `flowsync_last_run_flows`: a restored flow counts as changed, as in `sync_runs`.
RUN_OUTCOMES = (Outcome.CREATED, Outcome.CHANGED, Outcome.UNCHANGED, Outcome.DELETED, Outcome.FAILED)
FINISHED_STATUSES = (RunStatus.OK, RunStatus.PARTIAL, RunStatus.FAILED)


class SyncMetrics:
    """The contract's metrics in one registry of their own."""

    def __init__(self, *, count_runs: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.last_run = Gauge(
            "flowsync_last_run_timestamp_seconds",
            "When the latest run ended (Unix time)",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "flowsync_last_success_timestamp_seconds",
            "When the latest run that finished ok or partial ended (Unix time)",
            registry=self.registry,
        )
        self.last_duration = Gauge(
            "flowsync_last_run_duration_seconds", "How long the latest run took", registry=self.registry
        )
        self.last_run_flows = Gauge(
            "flowsync_last_run_flows",
            "Flows of the latest run by outcome (restored counts as changed)",
            ["outcome"],
            registry=self.registry,
        )
        self.flows = Gauge("flowsync_flows", "Stored flows by sync state", ["state"], registry=self.registry)
        self.account_refused = Gauge(
            "flowsync_last_run_account_refused",
            "1 when the API refused the account (-1 or -2) in the latest run, else 0",
            registry=self.registry,
        )
        self.runs: Counter | None = None
        for outcome in RUN_OUTCOMES:
            self.last_run_flows.labels(outcome=outcome.value)
        for state in SyncState:
            self.flows.labels(state=state.value)
        if count_runs:
            self.runs = Counter(
                "flowsync_runs", "Runs this worker finished, by status", ["status"], registry=self.registry
            )
            for status in FINISHED_STATUSES:
                self.runs.labels(status=status.value)

    def observe(self, facts: HealthFacts) -> None:
        """Set every gauge from the facts read after a run (`facts.latest_run` is that run)."""
        run = facts.latest_run
        if run is not None and run.finished_at is not None:
            self.last_run.set(run.finished_at.timestamp())
            self.last_duration.set((run.finished_at - run.started_at).total_seconds())
            counts = run.counts
            for outcome, value in zip(
                RUN_OUTCOMES,
                (counts.created, counts.changed, counts.unchanged, counts.deleted, counts.failed),
                strict=True,
            ):
                self.last_run_flows.labels(outcome=outcome.value).set(value)
            if self.runs is not None:
                self.runs.labels(status=run.status.value).inc()
        success = facts.latest_success
        if success is not None and success.finished_at is not None:
            self.last_success.set(success.finished_at.timestamp())
        for state, count in facts.flows_by_state.items():
            self.flows.labels(state=state.value).set(count)
        self.account_refused.set(1 if facts.account_refused else 0)

    def write(self, path: Path) -> None:
        """Write the metrics in the text format, atomically (a temporary file renamed over `path`)."""
        write_to_textfile(str(path), self.registry)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve `/metrics` from a background thread until the returned server is closed."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    """A running `/metrics` endpoint."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
