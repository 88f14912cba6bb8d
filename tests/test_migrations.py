"""The Alembic migrations build exactly the tables the models describe, on every backend."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sync.store import migrate
from sync.store.database import create_engine
from sync.store.schema import SCHEMA_REVISIONS, metadata

CONTRACT_TABLES = {
    "flows": {
        "flow_id",
        "name",
        "node_count",
        "content_hash",
        "first_seen_at",
        "last_changed_at",
        "last_fetched_at",
        "deleted_at",
        "sync_state",
        "last_error",
    },
    "flow_nodes": {"flow_id", "position", "waiting_time", "status", "channel", "channel_cut"},
    "flow_history": {
        "id",
        "run_id",
        "flow_id",
        "occurred_at",
        "event",
        "changes",
        "snapshot",
        "content_hash",
        "error_kind",
        "error_code",
        "error_message",
    },
    "sync_runs": {
        "id",
        "started_at",
        "finished_at",
        "triggered_by",
        "status",
        "flows_requested",
        "flows_created",
        "flows_changed",
        "flows_unchanged",
        "flows_deleted",
        "flows_failed",
        "error_message",
    },
}


def _differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_upgrade_from_empty_creates_the_contract_tables(database_url: str) -> None:
    """`db upgrade` on an empty database creates every table and column the contract names."""
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        inspector = sa.inspect(engine)
        for table, columns in CONTRACT_TABLES.items():
            assert columns <= {c["name"] for c in inspector.get_columns(table)}, table
    finally:
        engine.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    """An autogenerate comparison after upgrading finds nothing the migrations missed."""
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_downgrade_then_upgrade_again(database_url: str) -> None:
    """Downgrading to base removes the tables; upgrading again restores them; repeating is a no-op."""
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine)
        migrate.downgrade(engine, "base")
        assert not set(CONTRACT_TABLES) & set(sa.inspect(engine).get_table_names())
        migrate.upgrade(engine)
        migrate.upgrade(engine)
        assert set(CONTRACT_TABLES) <= set(sa.inspect(engine).get_table_names())
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_migrations_ship_with_the_package() -> None:
    """The migration scripts are found wherever the package is, with exactly one head."""
    assert len(migrate.head_revisions()) == 1
    assert migrate.head_revisions() <= migrate.known_revisions()


def test_schema_revisions_list_every_migration_oldest_first() -> None:
    """`SCHEMA_REVISIONS`, which a sync checks against without loading Alembic, matches the scripts."""
    scripts = list(reversed(list(migrate.script_directory().walk_revisions())))
    assert tuple(script.revision for script in scripts) == SCHEMA_REVISIONS
    assert {SCHEMA_REVISIONS[-1]} == migrate.head_revisions()
