"""Writing what a run learned: flows, their nodes, history events and run rows.

`write_results` takes a batch of fetch results and writes it in one transaction:
each flow's new configuration together with its history row, so a crash leaves
every flow wholly old or wholly new. Unchanged flows cost one `UPDATE` per batch
(their `last_fetched_at`) and never touch `flow_nodes` or `flow_history`. When the
database refuses one flow's values, the batch is retried flow by flow so only that
flow is recorded as failed. A lost connection is a `StoreError` for the run.

A batch with configuration events links them into the audit chain (`sync.core.chain`) in
its own transaction: one statement reads the chain's head and hands out the batch's
`flow_history` ids (the id is part of what is hashed), the rows are inserted with their
`chain_hash`, and the run row's `history_head` follows in the statement that adds the
batch's counts. The run lock keeps every other writer out meanwhile.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError

from sync.core.chain import ChainedEvent, ChainHasher, is_chained
from sync.core.diff import Change, diff
from sync.core.outcomes import Failed, Fetched, FetchResult, Gone, RunCounts
from sync.core.snapshot import FlowSnapshot, NodeSnapshot
from sync.core.versions import HistoryEvent, OpenVersion, VersionLedger
from sync.errors import DatabaseRefusal, FlowError, StoreError
from sync.store.bulk import insert_rows
from sync.store.database import short_error
from sync.store.schema import (
    flow_changes,
    flow_history,
    flow_nodes,
    flow_version_nodes,
    flow_versions,
    flows,
    sync_runs,
)
from sync.store.sqltypes import stored_timestamp
from sync.store.upsert import upsert
from sync.vocabulary import Event, Outcome, RunStatus, SyncState, Trigger

MAX_MESSAGE_CHARS = 1000
# A flow whose latest fetch succeeded has no failure streak (the analyst layer's `flows` columns).
NO_STREAK: dict[str, Any] = {
    "failing_since": None,
    "consecutive_failures": 0,
    "last_error_kind": None,
    "last_error_code": None,
}


@dataclass(frozen=True, slots=True)
class StoredFlow:
    """What a batch needs of every stored flow: enough to tell an unchanged one."""

    flow_id: int
    content_hash: str
    sync_state: str


@dataclass(frozen=True, slots=True)
class StoredDetails:
    """What a batch needs only of the flows it rewrites: their old name and timestamps."""

    name: str
    first_seen_at: datetime
    last_changed_at: datetime


def close_abandoned_runs(engine: Engine, now: datetime) -> list[int]:
    """Mark runs left `running` by a process that died as `failed`; call only while holding the run lock.

    A dead run's `history_head` is the head its last committed batch left, or, when it committed
    none, the chain's head now (nothing was written since it died).
    """
    with _transaction(engine) as connection:
        ids = list(
            connection.scalars(sa.select(sync_runs.c.id).where(sync_runs.c.status == RunStatus.RUNNING))
        )
        if ids:
            connection.execute(
                sync_runs.update()
                .where(sync_runs.c.id.in_(ids))
                .values(
                    status=RunStatus.FAILED,
                    finished_at=now,
                    error_message="the run never finished (its process was killed or crashed)",
                    history_head=sa.func.coalesce(sync_runs.c.history_head, chain_head()),
                )
            )
    return ids


def start_run(
    engine: Engine,
    now: datetime,
    *,
    triggered_by: Trigger,
    selection: str,
    requested: int,
    host: str,
    pid: int,
) -> int:
    with _transaction(engine) as connection:
        result = connection.execute(
            sync_runs.insert().values(
                started_at=now,
                triggered_by=triggered_by,
                status=RunStatus.RUNNING,
                flow_selection=selection,
                worker_host=host[:255],
                worker_pid=pid,
                **RunCounts(requested=requested).as_columns(),
            )
        )
        run_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    if run_id is None:  # pragma: no cover - every supported dialect returns the new key
        raise StoreError("the database did not return the new run's id")
    return int(run_id)


def set_requested(engine: Engine, run_id: int, requested: int) -> None:
    """Record how many flows an `all` run settles, once the listing has said."""
    with _transaction(engine) as connection:
        connection.execute(
            sync_runs.update().where(sync_runs.c.id == run_id).values(flows_requested=requested)
        )


def finish_run(
    engine: Engine, run_id: int, *, now: datetime, status: str, counts: RunCounts, error_message: str | None
) -> None:
    with _transaction(engine) as connection:
        connection.execute(
            sync_runs.update()
            .where(sync_runs.c.id == run_id)
            .values(
                finished_at=now,
                status=status,
                error_message=_clip(error_message),
                history_head=chain_head(),
                **counts.as_columns(),
            )
        )


def record_run_error(engine: Engine, run_id: int, now: datetime, error: FlowError) -> None:
    """An error that concerns the whole run (account refused, listing unusable): `flow_id` stays null."""
    with _transaction(engine) as connection:
        connection.execute(flow_history.insert().values(_error_row(run_id, now, None, error)))


def write_results(
    engine: Engine,
    run_id: int,
    now: datetime,
    results: Sequence[FetchResult],
    chain: ChainHasher = ChainHasher(),  # noqa: B008 - immutable
) -> Counter[Outcome]:
    """Store a batch of results; returns how many flows ended in each outcome."""
    try:
        with _transaction(engine, fatal_only=False) as connection:
            return _write(connection, run_id, now, results, chain)
    except DBAPIError as exc:
        if len(results) > 1:
            # Isolate the flow the database refuses; the others are still written.
            total: Counter[Outcome] = Counter()
            for result in results:
                total += write_results(engine, run_id, now, [result], chain)
            return total
        refused = DatabaseRefusal(
            f"the database refused this flow's values ({short_error(exc)})", flow_id=results[0].flow_id
        )
        with _transaction(engine) as connection:
            return _write(connection, run_id, now, [Failed(results[0].flow_id, refused)], chain)


def chain_head() -> sa.ScalarSelect[Any]:
    """The chain's head: the `chain_hash` of the configuration event with the highest id."""
    return (
        sa.select(flow_history.c.chain_hash)
        .where(flow_history.c.chain_hash.is_not(None))
        .order_by(flow_history.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def known_flow_ids(engine: Engine) -> Iterable[int]:
    """Every flow not already marked deleted, streamed (for `all` mode's deletion check)."""
    with _transaction(engine, read_only=True) as connection:
        rows = connection.execution_options(yield_per=5000).scalars(
            sa.select(flows.c.flow_id)
            .where(flows.c.sync_state != SyncState.DELETED)
            .order_by(flows.c.flow_id)
        )
        yield from rows


def _write(
    connection: Connection, run_id: int, now: datetime, results: Sequence[FetchResult], chain: ChainHasher
) -> Counter[Outcome]:
    stored = _stored_flows(connection, [r.flow_id for r in results if r.flow_id is not None])
    # Flows the batch rewrites (new content, or back after a deletion) need their old name and
    # timestamps, those with new content their old nodes for the diff; unchanged flows need neither.
    rewritten: list[int] = []
    changed: list[int] = []
    for result in results:
        if not isinstance(result, Fetched):
            continue
        previous = stored.get(result.flow_id)
        if previous is None:
            continue
        if previous.content_hash != result.snapshot.content_hash:
            rewritten.append(result.flow_id)
            changed.append(result.flow_id)
        elif previous.sync_state == SyncState.DELETED:
            rewritten.append(result.flow_id)
    details, corrupt = _stored_details(connection, rewritten)
    plan = _Plan(
        run_id=run_id,
        now=now,
        stored=stored,
        details=details,
        corrupt=corrupt,
        old_nodes=_stored_nodes(connection, changed),
    )
    for result in results:
        plan.add(result)
    head = plan.execute(connection, chain)
    _count_into_run(connection, run_id, plan.outcomes, head)
    return plan.outcomes


def _count_into_run(
    connection: Connection, run_id: int, outcomes: Counter[Outcome], head: str | None
) -> None:
    """Add a batch's outcomes to its run row in the same transaction: a killed run's counts stay exact.

    `head`: the chain's head after the batch, when it chained events; a killed run keeps it too.
    """
    batch = RunCounts()
    batch.add(outcomes)
    columns: dict[str, Any] = {
        name: sync_runs.c[name] + value for name, value in batch.as_columns().items() if value
    }
    columns.pop("flows_requested", None)
    if head is not None:
        columns["history_head"] = head
    if columns:
        connection.execute(sync_runs.update().where(sync_runs.c.id == run_id).values(columns))


@dataclass
class _Plan:
    """The statements one batch needs, decided from the stored state before anything is written."""

    run_id: int
    now: datetime
    stored: dict[int, StoredFlow]
    details: dict[int, StoredDetails]
    corrupt: dict[int, str]  # flows whose stored row cannot be read: why
    old_nodes: dict[int, list[NodeSnapshot]]
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    refresh: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    upserts: list[dict[str, Any]] = field(default_factory=list)
    replaced: list[FlowSnapshot] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    deletions: list[int] = field(default_factory=list)
    still_gone: list[int] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    # The configuration events among `history` (by position), for the analyst layer's rows.
    configurations: list[_ConfigurationEvent] = field(default_factory=list)

    def add(self, result: FetchResult) -> None:
        if result.flow_id is None:  # a listed item without a valid flow ID: nothing stored to touch
            self._failed(result, None)
            return
        previous = self.stored.get(result.flow_id)
        if result.flow_id in self.corrupt:
            # Rewriting it would need the values that cannot be read; the row stays for a person to see.
            refusal = DatabaseRefusal(self.corrupt[result.flow_id], flow_id=result.flow_id)
            self._failed(Failed(result.flow_id, refusal), previous)
        elif isinstance(result, Fetched):
            self._fetched(result.snapshot, previous)
        elif isinstance(result, Gone):
            self._gone(result.flow_id, previous)
        else:
            self._failed(result, previous)

    def _fetched(self, snapshot: FlowSnapshot, previous: StoredFlow | None) -> None:
        new_hash = snapshot.content_hash
        if (
            previous is not None
            and previous.content_hash == new_hash
            and previous.sync_state != SyncState.DELETED
        ):
            (self.recovered if previous.sync_state == SyncState.ERROR else self.refresh).append(
                snapshot.flow_id
            )
            self.outcomes[Outcome.UNCHANGED] += 1
            return
        event = Outcome.CREATED
        changes: list[Any] | None = None
        content_changed = previous is None or previous.content_hash != new_hash
        old: StoredDetails | None = None
        if previous is not None:
            old = self.details[snapshot.flow_id]
            event = Outcome.RESTORED if previous.sync_state == SyncState.DELETED else Outcome.CHANGED
            if content_changed:
                old_nodes = tuple(self.old_nodes.get(snapshot.flow_id, ()))
                changes = list(diff(FlowSnapshot(snapshot.flow_id, old.name, old_nodes), snapshot))
        self.upserts.append(
            {
                "flow_id": snapshot.flow_id,
                "name": snapshot.name,
                "node_count": len(snapshot.nodes),
                "content_hash": new_hash,
                "first_seen_at": self.now if old is None else old.first_seen_at,
                "last_changed_at": self.now if content_changed or old is None else old.last_changed_at,
                "last_fetched_at": self.now,
                "deleted_at": None,
                "sync_state": SyncState.OK,
                "last_error": None,
                **NO_STREAK,
            }
        )
        if content_changed:
            self.replaced.append(snapshot)
        self._configuration(Event(event), snapshot.flow_id, snapshot, changes)
        self.outcomes[event] += 1

    def _gone(self, flow_id: int, previous: StoredFlow | None) -> None:
        if previous is None or previous.sync_state == SyncState.DELETED:
            if previous is not None:
                self.still_gone.append(flow_id)  # a successful fetch all the same: it ends a failure streak
            self.outcomes[Outcome.UNCHANGED] += 1  # it did not exist before either
            return
        self.deletions.append(flow_id)
        self._configuration(Event.DELETED, flow_id, None, None)
        self.outcomes[Outcome.DELETED] += 1

    def _configuration(
        self, event: Event, flow_id: int, snapshot: FlowSnapshot | None, changes: list[Change] | None
    ) -> None:
        self.configurations.append(_ConfigurationEvent(len(self.history), event, flow_id, snapshot, changes))
        self.history.append(
            _event_row(self.run_id, self.now, flow_id, event, changes=changes, snapshot=snapshot)
        )

    def _failed(self, result: Failed, previous: StoredFlow | None) -> None:
        if previous is not None:
            # A flow the API already reported gone stays deleted; a failed fetch proves nothing.
            state = SyncState.DELETED if previous.sync_state == SyncState.DELETED else SyncState.ERROR
            self.failures.append(
                {
                    "b_flow_id": result.flow_id,
                    "b_state": state,
                    "b_error": _clip(result.error.message),
                    "b_kind": result.error.kind,
                    "b_code": result.error.code,
                }
            )
        self.history.append(_error_row(self.run_id, self.now, result.flow_id, result.error))
        self.outcomes[Outcome.FAILED] += 1

    def execute(self, connection: Connection, chain: ChainHasher) -> str | None:
        """Run the batch's statements; the chain's head after them when it chained events."""
        now = self.now
        if self.refresh:
            connection.execute(
                flows.update().where(flows.c.flow_id.in_(self.refresh)).values(last_fetched_at=now)
            )
        if self.recovered:
            connection.execute(
                flows.update()
                .where(flows.c.flow_id.in_(self.recovered))
                .values(last_fetched_at=now, sync_state=SyncState.OK, last_error=None, **NO_STREAK)
            )
        if self.still_gone:
            connection.execute(
                flows.update()
                .where(flows.c.flow_id.in_(self.still_gone))
                .values(last_fetched_at=now, last_error=None, **NO_STREAK)
            )
        upsert(connection, flows, self.upserts, keep=("first_seen_at",))
        if self.replaced:
            replaced_ids = [s.flow_id for s in self.replaced]
            connection.execute(flow_nodes.delete().where(flow_nodes.c.flow_id.in_(replaced_ids)))
            node_rows = [{"flow_id": s.flow_id, **node.as_json()} for s in self.replaced for node in s.nodes]
            insert_rows(connection, flow_nodes, node_rows)
        if self.failures:
            connection.execute(
                flows.update()
                .where(flows.c.flow_id == sa.bindparam("b_flow_id"))
                .values(
                    sync_state=sa.bindparam("b_state"),
                    last_error=sa.bindparam("b_error"),
                    consecutive_failures=flows.c.consecutive_failures + 1,
                    failing_since=sa.func.coalesce(flows.c.failing_since, now),
                    last_error_kind=sa.bindparam("b_kind"),
                    last_error_code=sa.bindparam("b_code"),
                ),
                self.failures,
            )
        if self.deletions:
            connection.execute(
                flows.update()
                .where(flows.c.flow_id.in_(self.deletions))
                .values(
                    sync_state=SyncState.DELETED,
                    deleted_at=now,
                    last_fetched_at=now,
                    last_error=None,
                    **NO_STREAK,
                )
            )
        if not self.history:
            return None
        if not self.configurations:
            insert_rows(connection, flow_history, self.history)
            return None
        # The id is part of what the chain hashes, and the analyst layer's rows name their events.
        history_ids, head = _next_ids_and_head(connection, len(self.history))
        for history_id, row in zip(history_ids, self.history, strict=True):
            row["id"] = history_id
            if is_chained(row["event"]):
                head = chain.link(head, _chained(row))
                row["chain_hash"] = head
        insert_rows(connection, flow_history, self.history)
        _write_versions(connection, self, history_ids)
        return head


def _next_ids_and_head(connection: Connection, count: int) -> tuple[list[int], str | None]:
    """`count` new `flow_history` ids, in order, and the chain's head, in one statement.

    PostgreSQL hands out ids from the column's sequence (the writer may use it, not set it);
    SQLite and MariaDB number from the highest id, as their own auto-increment would. The run
    lock keeps other writers out until the transaction commits.
    """
    head = chain_head()
    if connection.dialect.name == "postgresql":
        sequence = sa.func.pg_get_serial_sequence(flow_history.name, flow_history.c.id.name)
        rows = connection.execute(
            sa.select(sa.func.nextval(sequence), head).select_from(sa.func.generate_series(1, count))
        ).all()
        return sorted(int(row[0]) for row in rows), rows[0][1]
    highest, current = connection.execute(
        sa.select(sa.select(sa.func.max(flow_history.c.id)).scalar_subquery(), head)
    ).one()
    first = int(highest or 0) + 1
    return list(range(first, first + count)), current


def _chained(row: dict[str, Any]) -> ChainedEvent:
    return ChainedEvent(
        id=row["id"],
        run_id=row["run_id"],
        flow_id=row["flow_id"],
        occurred_at=row["occurred_at"],
        event=row["event"],
        changes=row["changes"],
        snapshot=row["snapshot"],
        content_hash=row["content_hash"],
    )


@dataclass(frozen=True, slots=True)
class _ConfigurationEvent:
    """A `created`, `changed`, `deleted` or `restored` row of a batch, with what its versions need."""

    index: int  # its place in the batch's history rows
    event: Event
    flow_id: int
    snapshot: FlowSnapshot | None
    changes: list[Change] | None


def _write_versions(connection: Connection, plan: _Plan, history_ids: list[int]) -> None:
    """Versions, their nodes and changed values for the batch's configuration events.

    Each flow's ledger starts from its latest stored version (none for a created flow), so the
    rows are exactly those the 0002 migration would derive from the same events.
    """
    ledgers = _ledgers(connection, [e.flow_id for e in plan.configurations if e.event != Event.CREATED])
    closed: list[dict[str, Any]] = []
    opened: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for configuration in plan.configurations:
        event = HistoryEvent(
            history_id=history_ids[configuration.index],
            run_id=plan.run_id,
            flow_id=configuration.flow_id,
            occurred_at=plan.now,
            event=configuration.event,
            snapshot=configuration.snapshot,
            changes=configuration.changes or (),
        )
        rows = ledgers.setdefault(configuration.flow_id, VersionLedger()).apply(event)
        if rows.closed is not None:
            closed.append(
                {
                    "b_flow_id": rows.closed.flow_id,
                    "b_version_no": rows.closed.version_no,
                    "b_valid_to": rows.closed.valid_to,
                    "b_closed_by": rows.closed.closed_by,
                    "b_closed_by_event": rows.closed.closed_by_event,
                    "b_seconds": rows.closed.seconds_current,
                }
            )
        if rows.opened is not None:
            opened.append(rows.opened.version_row())
            nodes.extend(rows.opened.node_rows())
        changes.extend(rows.change_rows(event))
    if closed:
        connection.execute(
            flow_versions.update()
            .where(
                flow_versions.c.flow_id == sa.bindparam("b_flow_id"),
                flow_versions.c.version_no == sa.bindparam("b_version_no"),
            )
            .values(
                valid_to=sa.bindparam("b_valid_to"),
                closed_by=sa.bindparam("b_closed_by"),
                closed_by_event=sa.bindparam("b_closed_by_event"),
                seconds_current=sa.bindparam("b_seconds"),
            ),
            closed,
        )
    for table, rows_ in ((flow_versions, opened), (flow_version_nodes, nodes), (flow_changes, changes)):
        insert_rows(connection, table, rows_)


def _ledgers(connection: Connection, ids: list[int]) -> dict[int, VersionLedger]:
    """Each flow's latest version number and its open version, if any."""
    if not ids:
        return {}
    latest = dict(
        connection.execute(
            sa.select(flow_versions.c.flow_id, sa.func.max(flow_versions.c.version_no))
            .where(flow_versions.c.flow_id.in_(ids))
            .group_by(flow_versions.c.flow_id)
        ).all()
    )
    open_versions = {
        flow_id: OpenVersion(version_no, valid_from)
        for flow_id, version_no, valid_from in connection.execute(
            sa.select(flow_versions.c.flow_id, flow_versions.c.version_no, flow_versions.c.valid_from).where(
                flow_versions.c.flow_id.in_(ids), flow_versions.c.valid_to.is_(None)
            )
        )
    }
    return {flow_id: VersionLedger(latest.get(flow_id, 0), open_versions.get(flow_id)) for flow_id in ids}


def _stored_flows(connection: Connection, ids: list[int]) -> dict[int, StoredFlow]:
    if not ids:
        return {}
    query = sa.select(flows.c.flow_id, flows.c.content_hash, flows.c.sync_state).where(
        flows.c.flow_id.in_(ids)
    )
    return {
        flow_id: StoredFlow(flow_id, digest, state) for flow_id, digest, state in connection.execute(query)
    }


def _stored_details(
    connection: Connection, ids: list[int]
) -> tuple[dict[int, StoredDetails], dict[int, str]]:
    """The old name and timestamps of `ids`, and, apart, the flows whose stored timestamps are unreadable.

    The timestamps are read raw and parsed per row, so that one corrupt value (SQLite stores any text
    in a timestamp column) fails only its own flow and not the whole batch.
    """
    details: dict[int, StoredDetails] = {}
    corrupt: dict[int, str] = {}
    if not ids:
        return details, corrupt
    columns = ("first_seen_at", "last_changed_at")
    query = sa.select(
        flows.c.flow_id, flows.c.name, *(sa.type_coerce(flows.c[name], sa.Text()) for name in columns)
    ).where(flows.c.flow_id.in_(ids))
    for flow_id, name, *raw in connection.execute(query):
        times: list[datetime] = []
        for column, value in zip(columns, raw, strict=True):
            try:
                times.append(stored_timestamp(value))
            except ValueError:
                corrupt[flow_id] = f"its stored row is corrupt: flows.{column} is not a timestamp"
                break
        else:
            details[flow_id] = StoredDetails(name, *times)
    return details, corrupt


def _stored_nodes(connection: Connection, ids: list[int]) -> dict[int, list[NodeSnapshot]]:
    nodes: dict[int, list[NodeSnapshot]] = defaultdict(list)
    if not ids:
        return nodes
    query = (
        sa.select(flow_nodes)
        .where(flow_nodes.c.flow_id.in_(ids))
        .order_by(flow_nodes.c.flow_id, flow_nodes.c.position)
    )
    for row in connection.execute(query):
        fields = row._asdict()
        nodes[fields.pop("flow_id")].append(NodeSnapshot(**fields))
    return nodes


def _event_row(
    run_id: int,
    now: datetime,
    flow_id: int | None,
    event: str,
    *,
    changes: list[Any] | None = None,
    snapshot: FlowSnapshot | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "flow_id": flow_id,
        "occurred_at": now,
        "event": event,
        "changes": changes,
        "snapshot": snapshot.as_json() if snapshot is not None else None,
        "content_hash": snapshot.content_hash if snapshot is not None else None,
        "error_kind": None,
        "error_code": None,
        "error_message": None,
        "chain_hash": None,
    }


def _error_row(run_id: int, now: datetime, flow_id: int | None, error: FlowError) -> dict[str, Any]:
    row = _event_row(run_id, now, flow_id, Event.ERROR)
    row.update(error_kind=error.kind, error_code=error.code, error_message=_clip(error.message))
    return row


def _clip(message: str | None) -> str | None:
    if message is None or len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 3] + "..."


@contextlib.contextmanager
def _transaction(engine: Engine, *, read_only: bool = False, fatal_only: bool = True) -> Iterator[Connection]:
    """`engine.begin()` that turns a lost or unusable database into `StoreError`.

    With `fatal_only=False`, other errors (a value the database refuses: a constraint, a
    trigger) pass through unchanged so the caller can isolate the flow. A lost connection is
    told by SQLAlchemy's own disconnect check, not by the error class: PyMySQL raises
    `OperationalError` for a trigger's SIGNAL as well as for a dropped connection. An error
    that is neither repeats when the caller retries flow by flow, and then ends the run.
    """
    target = engine.execution_options(flowsync_read_only=True) if read_only else engine
    try:
        with target.begin() as connection:
            yield connection
    except DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc, InterfaceError):
            raise StoreError(f"lost the connection or the server failed ({short_error(exc)})") from exc
        if fatal_only:
            raise StoreError(f"the server refused a statement ({short_error(exc)})") from exc
        raise
