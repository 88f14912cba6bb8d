"""Alembic environment for flowsync.

Called from `flowsync db upgrade` (the engine arrives in `config.attributes`) or
from the `alembic` command in a checkout (the URL comes from flowsync's settings).
It deliberately does not call `logging.config.fileConfig`, which would disable
every logger already configured in the running process.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from sync.app.settings import load_settings
from sync.store.database import create_engine
from sync.store.schema import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        engine = create_engine(load_settings({}, os.environ).database_url)
    with engine.connect() as connection:
        run_migrations(connection)
        connection.commit()


main()
