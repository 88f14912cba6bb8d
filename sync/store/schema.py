"""The tables analysts query: `flows`, `flow_nodes`, `flow_history`, `sync_runs`, and the analyst layer.

The analyst layer (schema 0002) keeps the history as plain tables: `flow_versions`,
`flow_version_nodes` and `flow_changes`, written in the same transaction as the
`flow_history` row each derives from, and the view `current_flow_nodes`.

Names follow the contract exactly and avoid words reserved in any of the three
SQL dialects. Constraints are named by convention so Alembic can compare and
alter them (SQLite batch mode needs names). Every timestamp is `UtcDateTime`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from sync.store.sqltypes import BigId, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Every migration in migrations/versions, oldest first; the last is the schema this flowsync
# writes. Kept here so a sync checks the schema without loading Alembic and its scripts (a
# test compares it with the scripts). Add each new migration's revision at the end.
SCHEMA_REVISIONS = ("0001", "0002", "0003", "0004")

# Where Alembic records the revision a database is at; read by `sync.store.database`, written by Alembic.
alembic_version = Table("alembic_version", MetaData(), Column("version_num", String(32), primary_key=True))

# MariaDB/MySQL default to a 3-byte "utf8" on some installs: names with emoji need utf8mb4.
_MYSQL_TABLE: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}

# Python None is SQL NULL in these columns, never the JSON document `null`.
_Json = JSON(none_as_null=True)

flows = Table(
    "flows",
    metadata,
    Column("flow_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("node_count", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_changed_at", UtcDateTime, nullable=False),
    Column("last_fetched_at", UtcDateTime, nullable=True),
    Column("deleted_at", UtcDateTime, nullable=True),
    Column("sync_state", String(16), nullable=False),
    Column("last_error", Text, nullable=True),
    # The current streak of failed fetches of this flow (analyst layer, 0002).
    Column("failing_since", UtcDateTime, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("last_error_kind", String(16), nullable=True),
    Column("last_error_code", String(32), nullable=True),
    **_MYSQL_TABLE,
)

flow_nodes = Table(
    "flow_nodes",
    metadata,
    Column(
        "flow_id",
        BigInteger,
        ForeignKey("flows.flow_id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("waiting_time", BigInteger, nullable=False),
    Column("status", BigInteger, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("channel_cut", BigInteger, nullable=False),
    **_MYSQL_TABLE,
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("triggered_by", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("flows_requested", Integer, nullable=False, default=0),
    Column("flows_created", Integer, nullable=False, default=0),
    Column("flows_changed", Integer, nullable=False, default=0),
    Column("flows_unchanged", Integer, nullable=False, default=0),
    Column("flows_deleted", Integer, nullable=False, default=0),
    Column("flows_failed", Integer, nullable=False, default=0),
    Column("error_message", Text, nullable=True),
    # Who ran it, for "which worker was that?" questions; not part of the contract's list.
    Column("flow_selection", Text, nullable=True),
    Column("worker_host", String(255), nullable=True),
    Column("worker_pid", Integer, nullable=True),
    # The audit chain's head when the run ended (schema 0003): the last configuration event's chain_hash.
    Column("history_head", String(64), nullable=True),
    # How the run's change alert ended (schema 0004): `sent`, `failed`, or null when none was due.
    Column("alert_status", String(16), nullable=True),
    Column("alert_error", String(200), nullable=True),
    **_MYSQL_TABLE,
)

flow_history = Table(
    "flow_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", BigId, ForeignKey("sync_runs.id"), nullable=True),
    Column("flow_id", BigInteger, nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("event", String(16), nullable=False),
    Column("changes", _Json, nullable=True),
    Column("snapshot", _Json, nullable=True),
    Column("content_hash", String(64), nullable=True),
    Column("error_kind", String(16), nullable=True),
    Column("error_code", String(32), nullable=True),
    Column("error_message", Text, nullable=True),
    # The audit chain (schema 0003): set on configuration events, null on `error` rows.
    Column("chain_hash", String(64), nullable=True),
    Index("ix_flow_history_flow_id_occurred_at", "flow_id", "occurred_at"),
    # Each flow's events in the order they happened, for `flowsync verify`'s replay.
    Index("ix_flow_history_flow_id_id", "flow_id", "id"),
    Index("ix_flow_history_occurred_at", "occurred_at"),
    Index("ix_flow_history_run_id", "run_id"),
    **_MYSQL_TABLE,
)

Index("ix_sync_runs_started_at", sync_runs.c.started_at)

flow_versions = Table(
    "flow_versions",
    metadata,
    Column(
        "flow_id",
        BigInteger,
        ForeignKey("flows.flow_id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("version_no", Integer, primary_key=True, autoincrement=False),
    Column("valid_from", UtcDateTime, nullable=False),
    Column("valid_to", UtcDateTime, nullable=True),
    Column("name", String(255), nullable=False),
    Column("node_count", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("opened_by", BigId, nullable=False),
    Column("closed_by", BigId, nullable=True),
    Column("opened_by_event", String(16), nullable=False),
    Column("closed_by_event", String(16), nullable=True),
    Column("seconds_current", BigInteger, nullable=True),
    Index("ix_flow_versions_valid_from", "valid_from"),
    **_MYSQL_TABLE,
)

flow_version_nodes = Table(
    "flow_version_nodes",
    metadata,
    Column("flow_id", BigInteger, primary_key=True, autoincrement=False),
    Column("version_no", Integer, primary_key=True, autoincrement=False),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("waiting_time", BigInteger, nullable=False),
    Column("status", BigInteger, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("channel_cut", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["flow_id", "version_no"],
        ["flow_versions.flow_id", "flow_versions.version_no"],
        name="fk_flow_version_nodes_flow_versions",
        ondelete="CASCADE",
    ),
    **_MYSQL_TABLE,
)

flow_changes = Table(
    "flow_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("history_id", BigId, ForeignKey("flow_history.id"), nullable=False),
    Column("run_id", BigId, nullable=True),
    Column("flow_id", BigInteger, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("occurred_on", Date, nullable=False),
    Column("event", String(16), nullable=False),
    Column("change_no", Integer, nullable=False),
    Column("field", String(64), nullable=False),
    Column("position", Integer, nullable=True),
    Column("attribute", String(32), nullable=False),
    Column("change_kind", String(16), nullable=False),
    Column("old_value", Text, nullable=True),
    Column("new_value", Text, nullable=True),
    UniqueConstraint("history_id", "change_no"),
    Index("ix_flow_changes_flow_id_occurred_at", "flow_id", "occurred_at"),
    Index("ix_flow_changes_occurred_on", "occurred_on"),
    **_MYSQL_TABLE,
)

# `current_flow_nodes`: the nodes of every flow that is not deleted, with their labels (a view made by
# migration 0002).
current_flow_nodes = Table(
    "current_flow_nodes",
    MetaData(),  # a view: read through this table, never created or compared by Alembic
    Column("flow_id", BigInteger),
    Column("flow_name", String(255)),
    Column("position", Integer),
    Column("waiting_time", BigInteger),
    Column("status", BigInteger),
    Column("status_label", String(32)),
    Column("channel", String(32)),
    Column("channel_cut", BigInteger),
    Column("channel_cut_label", String(32)),
)
