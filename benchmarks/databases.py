"""Scratch databases for the benchmark (SQLite files, or `bench_*` databases on a PostgreSQL server).

Each tool loads into an empty database of its own on the same server, so every
tool starts from the same state and none sees another's tables. Everything is
dropped at the end. `WriteCounter` proves that a run wrote no row to a table:
on PostgreSQL from the server's own tuple counters, on SQLite from temporary
triggers that count every insert, update and delete.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

KINDS = ("sqlite", "postgresql")
PG_STATS_SETTLE_S = 1.0
_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass
class ScratchDatabases:
    """Creates and drops the benchmark's databases of one kind."""

    kind: str
    workdir: Path
    admin_url: str = ""
    created: list[str] = field(default_factory=list)

    def create(self, tag: str) -> str:
        """An empty database for `tag`; returns its SQLAlchemy URL."""
        if not _NAME.match(tag):
            raise ValueError(f"database tags are lowercase words: {tag!r}")
        if self.kind == "sqlite":
            path = self.workdir / f"{tag}.db"
            for leftover in self.workdir.glob(f"{tag}.db*"):
                leftover.unlink()
            self.created.append(str(path))
            return f"sqlite:///{path}"
        name = f"bench_{os.getpid()}_{tag}"
        with self._admin() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self.kind == "sqlite":
            for created in self.created:
                for path in Path(created).parent.glob(Path(created).name + "*"):
                    path.unlink()
        else:
            with self._admin() as connection:
                for name in self.created:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()

    def dlt_target(self, url: str) -> tuple[str, str, str]:
        """dlt's destination, credentials and dataset for a database made by `create`."""
        if self.kind == "sqlite":
            return "sqlalchemy", url, "main"
        # dlt's postgres destination takes a libpq URL (it connects with psycopg2) and insists on a
        # password; under trust authentication any will do.
        parsed = make_url(url).set(drivername="postgresql")
        if parsed.password is None:
            parsed = parsed.set(password="unused")
        plain = parsed.render_as_string(hide_password=False)
        return "postgres", plain, "flows_dlt"

    def server_version(self) -> str | None:
        if self.kind != "postgresql":
            return None
        with self._admin() as connection:
            return str(connection.exec_driver_sql("SHOW server_version").scalar())

    @contextmanager
    def _admin(self) -> Iterator[sa.Connection]:
        engine = sa.create_engine(_psycopg(self.admin_url), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                yield connection
        finally:
            engine.dispose()


def _psycopg(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@contextmanager
def connect(url: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(_psycopg(url))
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def count_rows(url: str, tables: Sequence[str], schema: str | None = None) -> dict[str, int]:
    with connect(url) as connection:
        prefix = f'"{schema}".' if schema else ""
        return {
            table: int(connection.exec_driver_sql(f"SELECT count(*) FROM {prefix}{table}").scalar() or 0)
            for table in tables
        }


@dataclass(frozen=True)
class RunRow:
    """The latest `sync_runs` row of a flowsync database."""

    status: str
    counts: dict[str, int]
    duration_s: float


def latest_run(url: str) -> RunRow:
    with connect(url) as connection:
        row = connection.exec_driver_sql(
            "SELECT status, started_at, finished_at, flows_requested, flows_created, flows_changed, "
            "flows_unchanged, flows_deleted, flows_failed FROM sync_runs ORDER BY id DESC LIMIT 1"
        ).one()
    started, finished = (_timestamp(value) for value in (row[1], row[2]))
    names = ("requested", "created", "changed", "unchanged", "deleted", "failed")
    return RunRow(str(row[0]), dict(zip(names, (int(v) for v in row[3:]), strict=True)), finished - started)


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


class WriteCounter:
    """Counts the rows inserted, updated or deleted in some tables between `start` and `stop`."""

    def __init__(self, url: str, tables: Sequence[str]) -> None:
        self.url, self.tables = url, list(tables)
        self.sqlite = make_url(url).get_backend_name() == "sqlite"
        self._before: dict[str, int] = {}

    def start(self) -> None:
        if self.sqlite:
            with connect(self.url) as connection:
                connection.exec_driver_sql(
                    "CREATE TABLE IF NOT EXISTS bench_writes (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL)"
                )
                for table in self.tables:
                    connection.exec_driver_sql(f"INSERT OR REPLACE INTO bench_writes VALUES ('{table}', 0)")
                    for op in ("INSERT", "UPDATE", "DELETE"):
                        connection.exec_driver_sql(
                            f"CREATE TRIGGER IF NOT EXISTS bench_{table}_{op.lower()} AFTER {op} ON {table} "
                            f"BEGIN UPDATE bench_writes SET n = n + 1 WHERE tbl = '{table}'; END"
                        )
        else:
            self._before = self._pg_counters()

    def stop(self) -> dict[str, int]:
        if not self.sqlite:
            time.sleep(PG_STATS_SETTLE_S)  # a backend reports its counters as its session ends
            after = self._pg_counters()
            return {table: after[table] - self._before.get(table, 0) for table in self.tables}
        with connect(self.url) as connection:
            counts = {
                str(tbl): int(n)
                for tbl, n in connection.exec_driver_sql("SELECT tbl, n FROM bench_writes").all()
            }
            for table in self.tables:
                for op in ("insert", "update", "delete"):
                    connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS bench_{table}_{op}")
            connection.exec_driver_sql("DROP TABLE bench_writes")
        return {table: counts.get(table, 0) for table in self.tables}

    def _pg_counters(self) -> dict[str, int]:
        names = ", ".join(f"'{table}'" for table in self.tables)
        with connect(self.url) as connection:
            rows = connection.exec_driver_sql(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
                f"WHERE relname IN ({names})"
            ).all()
        return {str(name): int(n) for name, n in rows}
