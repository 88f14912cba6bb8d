"""Inserting many rows at once: `COPY` on PostgreSQL, an `executemany` elsewhere.

The store's one speed device. On PostgreSQL, psycopg sends an `executemany` as one
`INSERT` per row (pipelined, but each row still goes through SQLAlchemy's and psycopg's
per-row Python code); `COPY ... FROM STDIN` streams the same rows in one command. A first
load of 10,000 flows writes 10,000 rows each to `flow_history` and `flow_versions` and
about 25,000 each to `flow_nodes` and `flow_version_nodes`. Measured gain on the benchmark
(N = 10,000, PostgreSQL 15, 2 cores, medians of three interleaved rounds): the first load
fell from 9.35 s wall and 7.41 s CPU to 8.20 s and 5.40 s. SQLite and MariaDB keep the
`executemany`, which is their fast path.

Each value goes through its column's own bind processing first (`UtcDateTime`'s UTC check,
the JSON columns' serializer), exactly as an `INSERT` would send it, so `COPY` stores the
same text. Columns a row leaves out get their server default; a table with a Python-side
default for such a column (`sync_runs`' counters) takes the `executemany` path.

The rows go in the connection's open transaction, so they commit or roll back with the
rest of the batch. A refused row raises SQLAlchemy's `DBAPIError` like any other
statement, so the writer isolates the refusing flow as usual. A session lost during the
COPY invalidates the connection, as SQLAlchemy does for its own statements, so the writer
reports a lost database with the server's reason (`tests/test_bulk_insert.py` shows
both). SQLAlchemy's statement events do not see a COPY: tests that check what a run
writes count rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


def insert_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` in the connection's transaction; every row has the first row's keys."""
    if not rows:
        return
    dialect = connection.dialect
    names = list(rows[0])
    python_defaults = [c.name for c in table.columns if c.default is not None and c.name not in names]
    if dialect.name != "postgresql" or python_defaults:
        connection.execute(table.insert(), list(rows))
        return
    processors = [
        (index, processor)
        for index, name in enumerate(names)
        if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    quote = dialect.identifier_preparer
    statement = f"COPY {quote.format_table(table)} ({', '.join(map(quote.quote, names))}) FROM STDIN"
    if not connection.in_transaction():
        connection.begin()  # the driver's COPY would open a transaction SQLAlchemy does not know of
    driver = connection.connection.driver_connection
    error = dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for row in rows:
                values = [row[name] for name in names]
                for index, processor in processors:
                    values[index] = processor(values[index])
                copy.write_row(values)
    except error as exc:
        # As SQLAlchemy does for its own statements: a dead session invalidates the connection,
        # so the error reads as a lost database with the server's reason, not as a refused row.
        lost = dialect.is_disconnect(exc, driver, None)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, error, connection_invalidated=lost, dialect=dialect
        ) from exc
