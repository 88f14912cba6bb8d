"""create flows, flow_nodes, flow_history and sync_runs

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sync.store.sqltypes


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("flow_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", sync.store.sqltypes.UtcDateTime(), nullable=False),
        sa.Column("last_changed_at", sync.store.sqltypes.UtcDateTime(), nullable=False),
        sa.Column("last_fetched_at", sync.store.sqltypes.UtcDateTime(), nullable=True),
        sa.Column("deleted_at", sync.store.sqltypes.UtcDateTime(), nullable=True),
        sa.Column("sync_state", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("flow_id", name=op.f("pk_flows")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "sync_runs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("started_at", sync.store.sqltypes.UtcDateTime(), nullable=False),
        sa.Column("finished_at", sync.store.sqltypes.UtcDateTime(), nullable=True),
        sa.Column("triggered_by", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("flows_requested", sa.Integer(), nullable=False),
        sa.Column("flows_created", sa.Integer(), nullable=False),
        sa.Column("flows_changed", sa.Integer(), nullable=False),
        sa.Column("flows_unchanged", sa.Integer(), nullable=False),
        sa.Column("flows_deleted", sa.Integer(), nullable=False),
        sa.Column("flows_failed", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("flow_selection", sa.Text(), nullable=True),
        sa.Column("worker_host", sa.String(length=255), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index("ix_sync_runs_started_at", ["started_at"], unique=False)

    op.create_table(
        "flow_history",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("flow_id", sa.BigInteger(), nullable=True),
        sa.Column("occurred_at", sync.store.sqltypes.UtcDateTime(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("changes", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("snapshot", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("error_kind", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["sync_runs.id"], name=op.f("fk_flow_history_run_id_sync_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_history")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("flow_history", schema=None) as batch_op:
        batch_op.create_index("ix_flow_history_flow_id_occurred_at", ["flow_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_flow_history_occurred_at", ["occurred_at"], unique=False)
        batch_op.create_index("ix_flow_history_run_id", ["run_id"], unique=False)

    op.create_table(
        "flow_nodes",
        sa.Column("flow_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("waiting_time", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("channel_cut", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flows.flow_id"], name=op.f("fk_flow_nodes_flow_id_flows"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("flow_id", "position", name=op.f("pk_flow_nodes")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; MariaDB refuses to drop an index a foreign key uses.
    op.drop_table("flow_nodes")
    op.drop_table("flow_history")
    op.drop_table("sync_runs")
    op.drop_table("flows")
