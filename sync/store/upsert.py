"""Insert-or-update in each dialect's native form."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection


def upsert(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], keep: Sequence[str] = ()
) -> None:
    """Insert `rows`; where the primary key exists, update every column except the key and `keep`."""
    if not rows:
        return
    key = [column.name for column in table.primary_key.columns]
    update = [c.name for c in table.columns if c.name not in key and c.name not in keep]
    dialect = connection.dialect.name
    # The dialect's module is already loaded by its engine; importing it here spares a SQLite run
    # from loading PostgreSQL's.
    if dialect in ("mysql", "mariadb"):
        mysql_insert = import_module("sqlalchemy.dialects.mysql").insert(table)
        statement: Any = mysql_insert.on_duplicate_key_update({c: mysql_insert.inserted[c] for c in update})
    else:
        insert = import_module(f"sqlalchemy.dialects.{dialect}").insert(table)
        statement = insert.on_conflict_do_update(
            index_elements=key, set_={c: insert.excluded[c] for c in update}
        )
    connection.execute(statement, list(rows))
