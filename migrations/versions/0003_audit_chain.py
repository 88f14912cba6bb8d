"""audit chain: flow_history.chain_hash, sync_runs.history_head

Adds the audit chain's columns and chains the history a database already holds: every
configuration event (`created`, `changed`, `deleted`, `restored`), in `id` order, gets
the `chain_hash` that flowsync's writer would have given it (`sync.core.chain`, the same
code), and every run its `history_head`, the chain's head when it ended. Runs never
overlap, so a run's head is the hash of the last configuration event written by it or by
a run before it. With `FLOWSYNC_AUDIT_KEY` set during `flowsync db upgrade`, the chain is
an HMAC under that key. The history is read a slice of ids at a time and the hashes are
written in batches, so memory stays bounded however long the history is.

Rows that cannot be read (possible on SQLite, which keeps any text in any column) are
left without a hash, with a warning naming them; `flowsync verify` reports them.

An index on (`flow_id`, `id`) lets `flowsync verify` read each flow's events in order.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from sync.core.chain import ChainedEvent, ChainHasher, is_chained
from sync.store.sqltypes import stored_timestamp

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

SLICE_ROWS = 5000  # history rows read at a time
FLUSH_ROWS = 2000  # hashes buffered before they are written

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("flow_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_hash", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_flow_history_flow_id_id", ["flow_id", "id"], unique=False)
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("history_head", sa.String(length=64), nullable=True))
    config = op.get_context().config
    chain = config.attributes.get("chain") if config is not None else None
    _chain_history(op.get_bind(), chain if isinstance(chain, ChainHasher) else ChainHasher())


def downgrade() -> None:
    op.drop_index("ix_flow_history_flow_id_id", table_name="flow_history")
    # Plain ALTER (SQLite 3.35 or later): a batch copy of sync_runs would fail its foreign keys on SQLite.
    op.execute("ALTER TABLE sync_runs DROP COLUMN history_head")
    op.execute("ALTER TABLE flow_history DROP COLUMN chain_hash")


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
    sa.column("content_hash", sa.String()),
    sa.column("chain_hash", sa.String()),
)
_runs = sa.table("sync_runs", sa.column("id", BIG_ID), sa.column("history_head", sa.String()))


class _Writes:
    """Hashes and run heads waiting to be written."""

    def __init__(self, bind: sa.Connection) -> None:
        self.bind = bind
        self.hashes: list[dict[str, Any]] = []
        self.heads: list[dict[str, Any]] = []

    def flush(self, *, force: bool = False) -> None:
        if self.hashes and (force or len(self.hashes) >= FLUSH_ROWS):
            self.bind.execute(
                _history.update()
                .where(_history.c.id == sa.bindparam("b_id"))
                .values(chain_hash=sa.bindparam("b_hash")),
                self.hashes,
            )
            self.hashes.clear()
        if self.heads and (force or len(self.heads) >= FLUSH_ROWS):
            self.bind.execute(
                _runs.update()
                .where(_runs.c.id == sa.bindparam("b_id"))
                .values(history_head=sa.bindparam("b_head")),
                self.heads,
            )
            self.heads.clear()


class _Runs:
    """The runs in id order, each given the chain's head once every event of it has been chained."""

    def __init__(self, bind: sa.Connection, writes: _Writes) -> None:
        self.pending = _paged(bind, sa.select(_runs.c.id), _runs.c.id)
        self.writes = writes
        self.next_id = next(self.pending, None)

    def settle_before(self, run_id: int | None, head: str | None) -> None:
        """Runs numbered below `run_id` (all of them for None) ended with `head`."""
        while self.next_id is not None and (run_id is None or self.next_id < run_id):
            if head is not None:
                self.writes.heads.append({"b_id": self.next_id, "b_head": head})
            self.next_id = next(self.pending, None)


def _chain_history(bind: sa.Connection, chain: ChainHasher) -> None:
    writes = _Writes(bind)
    runs = _Runs(bind, writes)
    head: str | None = None
    chained = 0
    columns = sa.select(*(c for c in _history.c if c.name != "chain_hash"))
    for row in _paged(bind, columns, _history.c.id):
        if not is_chained(row.event):
            continue
        if row.run_id is not None:
            runs.settle_before(row.run_id, head)
        event = _event(row)
        if event is None:
            continue
        head = chain.link(head, event)
        writes.hashes.append({"b_id": row.id, "b_hash": head})
        chained += 1
        writes.flush()
    runs.settle_before(None, head)
    writes.flush(force=True)
    log.info("audit chain: %d configuration events chained (%s)", chained, chain.kind)


def _paged(bind: sa.Connection, query: sa.Select[Any], key: sa.ColumnClause[Any]) -> Iterator[Any]:
    """Rows (or a single column's values) in `key` order, a slice at a time.

    Slices by key rather than one streamed cursor: PyMySQL cannot run the updates on a
    connection whose unbuffered result is still being read.
    """
    single = len(query.selected_columns) == 1
    page = query.order_by(key).limit(SLICE_ROWS)
    after: int | None = None
    while True:
        rows = bind.execute(page if after is None else page.where(key > after)).all()
        yield from (row[0] for row in rows) if single else rows
        if len(rows) < SLICE_ROWS:
            return
        last = rows[-1]
        after = last[0] if single else last.id


def _event(row: sa.Row[Any]) -> ChainedEvent | None:
    try:
        occurred_at = stored_timestamp(row.occurred_at)
        changes = _json(row.changes)
        snapshot = _json(row.snapshot)
    except (ValueError, TypeError, RecursionError) as exc:
        log.warning("flow_history row %s is not readable and was left out of the chain: %s", row.id, exc)
        return None
    return ChainedEvent(
        id=row.id,
        run_id=row.run_id,
        flow_id=row.flow_id,
        occurred_at=occurred_at,
        event=row.event,
        changes=changes,
        snapshot=snapshot,
        content_hash=row.content_hash,
    )


def _json(value: object) -> Any:
    # The drivers hand JSON back as text, except psycopg, which may decode it already.
    return json.loads(value) if isinstance(value, str | bytes) else value
