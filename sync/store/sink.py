"""The SQL store as the sink of a run (`sync.pipeline.ports.ResultSink`).

It holds the run lock for the whole run and checks, before every write, that the lock is
still held: once a server has dropped the session holding it, another run may be writing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.engine import Engine

from sync.core.chain import ChainHasher
from sync.core.outcomes import FetchResult, RunCounts
from sync.errors import FlowError
from sync.store import writer
from sync.store.run_lock import HeldLock
from sync.vocabulary import Outcome, RunStatus, Trigger


class SqlResultSink:
    """Writes a run's rows through `sync.store.writer`, under a held run lock."""

    def __init__(self, engine: Engine, lock: HeldLock, chain: ChainHasher | None = None) -> None:
        self._engine = engine
        self._lock = lock
        self._chain = chain or ChainHasher()

    def close_abandoned_runs(self, now: datetime) -> list[int]:
        return writer.close_abandoned_runs(self._engine, now)

    def start_run(
        self, now: datetime, *, triggered_by: Trigger, selection: str, requested: int, host: str, pid: int
    ) -> int:
        return writer.start_run(
            self._engine,
            now,
            triggered_by=triggered_by,
            selection=selection,
            requested=requested,
            host=host,
            pid=pid,
        )

    def set_requested(self, run_id: int, requested: int) -> None:
        writer.set_requested(self._engine, run_id, requested)

    def known_flow_ids(self) -> Iterable[int]:
        return writer.known_flow_ids(self._engine)

    def write_batch(self, run_id: int, now: datetime, results: Sequence[FetchResult]) -> Counter[Outcome]:
        self._lock.verify()
        return writer.write_results(self._engine, run_id, now, results, self._chain)

    def record_run_error(self, run_id: int, now: datetime, error: FlowError) -> None:
        self._lock.verify()
        writer.record_run_error(self._engine, run_id, now, error)

    def finish_run(
        self, run_id: int, now: datetime, *, status: RunStatus, counts: RunCounts, error_message: str | None
    ) -> None:
        writer.finish_run(
            self._engine, run_id, now=now, status=status, counts=counts, error_message=error_message
        )
