"""analyst layer: flow_versions, flow_version_nodes, flow_changes, streak columns, current_flow_nodes

Creates the plain tables that answer questions about the past without JSON functions,
and fills them from the `flow_history` a database already holds, a slice of events at a
time, so memory stays bounded however long the history is. The versions and changes are
derived by `sync.core.versions.VersionLedger`, the same code the writer uses for new
events, so an upgraded database holds exactly what flowsync would have written. The
streak columns of `flows` come from each flow's `error` events after its last successful
fetch (`last_fetched_at`).

Rows that cannot be read (possible on SQLite, which keeps any text in any column) are
skipped with a warning naming them; `flowsync verify` reports what they left out.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import sync.store.sqltypes
from sync.core.snapshot import from_json
from sync.core.versions import HistoryEvent, VersionLedger
from sync.store.sqltypes import stored_timestamp
from sync.vocabulary import Event

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

SLICE_ROWS = 5000  # history rows read at a time
FLUSH_ROWS = 2000  # rows buffered per table before they are inserted

MYSQL_TABLE: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Standard SQL, the same text on the three databases; the labels are the vendor's words
# (sync.core.labels, which a test compares with this view).
CURRENT_FLOW_NODES = """
CREATE VIEW current_flow_nodes AS
SELECT n.flow_id, f.name AS flow_name, n.position, n.waiting_time, n.status,
       CASE n.status WHEN 1 THEN 'sending failed' WHEN 2 THEN 'not verified' END AS status_label,
       n.channel, n.channel_cut,
       CASE n.channel_cut WHEN 0 THEN 'switch channel' WHEN 1 THEN 'do not switch' END
           AS channel_cut_label
FROM flow_nodes n
JOIN flows f ON f.flow_id = n.flow_id
WHERE f.sync_state <> 'deleted'
"""


def upgrade() -> None:
    with op.batch_alter_table("flows", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failing_since", sync.store.sqltypes.UtcDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("last_error_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("last_error_code", sa.String(length=32), nullable=True))

    op.create_table(
        "flow_versions",
        sa.Column("flow_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("version_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("valid_from", sync.store.sqltypes.UtcDateTime(), nullable=False),
        sa.Column("valid_to", sync.store.sqltypes.UtcDateTime(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("opened_by", BIG_ID, nullable=False),
        sa.Column("closed_by", BIG_ID, nullable=True),
        sa.Column("opened_by_event", sa.String(length=16), nullable=False),
        sa.Column("closed_by_event", sa.String(length=16), nullable=True),
        sa.Column("seconds_current", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flows.flow_id"], name=op.f("fk_flow_versions_flow_id_flows"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("flow_id", "version_no", name=op.f("pk_flow_versions")),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("flow_versions", schema=None) as batch_op:
        batch_op.create_index("ix_flow_versions_valid_from", ["valid_from"], unique=False)

    op.create_table(
        "flow_version_nodes",
        sa.Column("flow_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("version_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("waiting_time", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("channel_cut", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_id", "version_no"],
            ["flow_versions.flow_id", "flow_versions.version_no"],
            name="fk_flow_version_nodes_flow_versions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("flow_id", "version_no", "position", name=op.f("pk_flow_version_nodes")),
        **MYSQL_TABLE,
    )

    op.create_table(
        "flow_changes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("history_id", BIG_ID, nullable=False),
        sa.Column("run_id", BIG_ID, nullable=True),
        sa.Column("flow_id", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sync.store.sqltypes.UtcDateTime(), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("change_no", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("attribute", sa.String(length=32), nullable=False),
        sa.Column("change_kind", sa.String(length=16), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["history_id"], ["flow_history.id"], name=op.f("fk_flow_changes_history_id_flow_history")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_changes")),
        sa.UniqueConstraint("history_id", "change_no", name=op.f("uq_flow_changes_history_id_change_no")),
        **MYSQL_TABLE,
    )
    with op.batch_alter_table("flow_changes", schema=None) as batch_op:
        batch_op.create_index("ix_flow_changes_flow_id_occurred_at", ["flow_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_flow_changes_occurred_on", ["occurred_on"], unique=False)

    op.execute(CURRENT_FLOW_NODES)
    _fill_from_history(op.get_bind())


def downgrade() -> None:
    op.execute("DROP VIEW current_flow_nodes")
    op.drop_table("flow_changes")
    op.drop_table("flow_version_nodes")
    op.drop_table("flow_versions")
    with op.batch_alter_table("flows", schema=None) as batch_op:
        batch_op.drop_column("last_error_code")
        batch_op.drop_column("last_error_kind")
        batch_op.drop_column("consecutive_failures")
        batch_op.drop_column("failing_since")


# The data, as this revision knows it (the models in sync.store.schema move on; this must not).
_history = sa.table(
    "flow_history",
    sa.column("id", BIG_ID),
    sa.column("run_id", BIG_ID),
    sa.column("flow_id", sa.BigInteger()),
    sa.column("occurred_at", sa.Text()),  # read raw and parsed per row: a corrupt one is skipped
    sa.column("event", sa.String()),
    sa.column("changes", sa.Text()),
    sa.column("snapshot", sa.Text()),
    sa.column("error_kind", sa.String()),
    sa.column("error_code", sa.String()),
)
_flows = sa.table(
    "flows",
    sa.column("flow_id", sa.BigInteger()),
    sa.column("last_fetched_at", sa.Text()),
    sa.column("failing_since", sync.store.sqltypes.UtcDateTime()),
    sa.column("consecutive_failures", sa.Integer()),
    sa.column("last_error_kind", sa.String()),
    sa.column("last_error_code", sa.String()),
)
_versions = sa.table(
    "flow_versions",
    *(
        sa.column(name, sync.store.sqltypes.UtcDateTime() if name in ("valid_from", "valid_to") else None)
        for name in (
            "flow_id",
            "version_no",
            "valid_from",
            "valid_to",
            "name",
            "node_count",
            "content_hash",
            "opened_by",
            "closed_by",
            "opened_by_event",
            "closed_by_event",
            "seconds_current",
        )
    ),
)
_version_nodes = sa.table(
    "flow_version_nodes",
    *(
        sa.column(name)
        for name in ("flow_id", "version_no", "position", "waiting_time", "status", "channel", "channel_cut")
    ),
)
_changes = sa.table(
    "flow_changes",
    *(
        sa.column(name, sync.store.sqltypes.UtcDateTime() if name == "occurred_at" else None)
        for name in (
            "history_id",
            "run_id",
            "flow_id",
            "occurred_at",
            "occurred_on",
            "event",
            "change_no",
            "field",
            "position",
            "attribute",
            "change_kind",
            "old_value",
            "new_value",
        )
    ),
)


class _Inserts:
    """Rows waiting to be inserted, flushed in FK order whenever one table has enough."""

    def __init__(self, bind: sa.Connection) -> None:
        self.bind = bind
        self.versions: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.streaks: list[dict[str, Any]] = []

    def maybe_flush(self) -> None:
        if max(len(self.versions), len(self.nodes), len(self.changes), len(self.streaks)) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        for table, rows in (
            (_versions, self.versions),
            (_version_nodes, self.nodes),
            (_changes, self.changes),
        ):
            if rows:
                self.bind.execute(table.insert(), rows)
                rows.clear()
        if self.streaks:
            self.bind.execute(
                _flows.update()
                .where(_flows.c.flow_id == sa.bindparam("b_flow_id"))
                .values(
                    failing_since=sa.bindparam("b_since"),
                    consecutive_failures=sa.bindparam("b_count"),
                    last_error_kind=sa.bindparam("b_kind"),
                    last_error_code=sa.bindparam("b_code"),
                ),
                self.streaks,
            )
            self.streaks.clear()


class _Flow:
    """One flow's history being replayed: its versions so far and its trailing failures."""

    def __init__(self, flow_id: int, last_fetched_at: datetime | None) -> None:
        self.flow_id = flow_id
        self.last_fetched_at = last_fetched_at
        self.ledger = VersionLedger()
        self.versions: dict[int, dict[str, Any]] = {}
        self.nodes: list[dict[str, Any]] = []
        self.failures: list[tuple[datetime, str | None, str | None]] = []

    def apply(self, row: sa.Row[Any], occurred_at: datetime, inserts: _Inserts) -> None:
        if row.event == Event.ERROR:
            if self.last_fetched_at is not None and occurred_at > self.last_fetched_at:
                self.failures.append((occurred_at, row.error_kind, row.error_code))
            return
        event = _event(row, occurred_at)
        if event is None:
            return
        rows = self.ledger.apply(event)
        if rows.closed is not None and rows.closed.version_no in self.versions:
            self.versions[rows.closed.version_no].update(
                valid_to=rows.closed.valid_to,
                closed_by=rows.closed.closed_by,
                closed_by_event=rows.closed.closed_by_event,
                seconds_current=rows.closed.seconds_current,
            )
        if rows.opened is not None:
            self.versions[rows.opened.version_no] = rows.opened.version_row()
            self.nodes.extend(rows.opened.node_rows())
        inserts.changes.extend(rows.change_rows(event))

    def finish(self, inserts: _Inserts) -> None:
        inserts.versions.extend(self.versions.values())
        inserts.nodes.extend(self.nodes)
        if self.failures:
            inserts.streaks.append(
                {
                    "b_flow_id": self.flow_id,
                    "b_since": self.failures[0][0],
                    "b_count": len(self.failures),
                    "b_kind": self.failures[-1][1],
                    "b_code": self.failures[-1][2],
                }
            )
        inserts.maybe_flush()


def _fill_from_history(bind: sa.Connection) -> None:
    inserts = _Inserts(bind)
    flow: _Flow | None = None
    events = 0
    for row in _history_of_stored_flows(bind):
        if flow is None or row.flow_id != flow.flow_id:
            if flow is not None:
                flow.finish(inserts)
            flow = _Flow(
                row.flow_id, _timestamp(row.last_fetched_at, "flows", row.flow_id, "last_fetched_at")
            )
        occurred_at = _timestamp(row.occurred_at, "flow_history", row.id, "occurred_at")
        if occurred_at is not None:
            flow.apply(row, occurred_at, inserts)
            events += 1
    if flow is not None:
        flow.finish(inserts)
    inserts.flush()
    log.info("analyst layer filled from %d history events", events)


def _history_of_stored_flows(bind: sa.Connection) -> Iterator[sa.Row[Any]]:
    """Every event of every stored flow, by flow then id, read a slice at a time.

    Slices by key rather than one streamed cursor: PyMySQL cannot run the inserts on a
    connection whose unbuffered result is still being read.
    """
    columns = [*_history.c, _flows.c.last_fetched_at]
    query = (
        sa.select(*columns)
        .select_from(_history.join(_flows, _flows.c.flow_id == _history.c.flow_id))
        .order_by(_history.c.flow_id, _history.c.id)
        .limit(SLICE_ROWS)
    )
    after: tuple[int, int] | None = None
    while True:
        page = query if after is None else query.where(sa.tuple_(_history.c.flow_id, _history.c.id) > after)
        rows = bind.execute(page).all()
        yield from rows
        if len(rows) < SLICE_ROWS:
            return
        after = (rows[-1].flow_id, rows[-1].id)


def _event(row: sa.Row[Any], occurred_at: datetime) -> HistoryEvent | None:
    try:
        event = Event(row.event)
        snapshot = from_json(_json(row.snapshot)) if row.snapshot is not None else None
        changes = _json(row.changes) if row.changes is not None else []
        if not isinstance(changes, list) or not all(isinstance(change, dict) for change in changes):
            raise ValueError("changes is not a list of changes")
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("flow_history row %s is not readable and was skipped: %s", row.id, exc)
        return None
    return HistoryEvent(
        history_id=row.id,
        run_id=row.run_id,
        flow_id=row.flow_id,
        occurred_at=occurred_at,
        event=event,
        snapshot=snapshot,
        changes=changes,
    )


def _json(value: object) -> Any:
    # The drivers hand JSON back as text, except psycopg, which may decode it already.
    return json.loads(value) if isinstance(value, str | bytes) else value


def _timestamp(value: object, table: str, key: object, column: str) -> datetime | None:
    if value is None:
        return None
    try:
        return stored_timestamp(value)
    except ValueError:
        log.warning("%s row %s: its %s is not a timestamp, so the row was skipped", table, key, column)
        return None
