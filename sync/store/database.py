"""Opening the database: engines configured per dialect, and the schema check.

SQLite is opened the way a concurrent writer needs it: WAL journal, foreign keys
on, a busy timeout, and write transactions started with `BEGIN IMMEDIATE` so a
transaction that reads and then writes waits for the lock instead of failing with
"database is locked" (the recipe from SQLAlchemy's pysqlite documentation).
Servers get `pool_pre_ping`, so a connection lost between runs is replaced
instead of failing the next run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from sync.errors import ConfigError, SchemaError, StoreError
from sync.store.schema import alembic_version

SQLITE_BUSY_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_S = 300
READ_ONLY = {"flowsync_read_only": True}

# A bare scheme means the driver flowsync ships as an extra, not SQLAlchemy's older default.
_DEFAULT_DRIVERS = {
    "postgresql": ("postgresql+psycopg", "postgres"),
    "postgres": ("postgresql+psycopg", "postgres"),
    "mysql": ("mysql+pymysql", "mysql"),
    "mariadb": ("mariadb+pymysql", "mysql"),
}
_EXTRA_FOR_DRIVER = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql", "MySQLdb": "mysql"}


def database_url(url: str) -> URL:
    """The URL flowsync connects with: a bare `postgresql://` or `mysql://` gets the shipped driver."""
    parsed = make_url(url)
    if parsed.drivername in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername][0])
    return parsed


_SECRET_QUERY_KEY = re.compile(r"pass|secret|token|key", re.IGNORECASE)


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs (also `?password=` and the like)."""
    parsed = make_url(url)
    masked = {k: "hidden" if _SECRET_QUERY_KEY.search(k) else v for k, v in parsed.query.items()}
    return parsed.set(query=masked).render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file of a file-backed SQLite URL, or None (a server, or an in-memory database)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database)


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; a missing driver is a `ConfigError` that says which extra to install."""
    parsed = database_url(url)
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {"pool_pre_ping": backend != "sqlite"}
    if backend == "sqlite":
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        path = sqlite_path(parsed)
        if path is not None and not path.parent.is_dir():
            raise ConfigError("database_url", f"the folder {path.parent} does not exist")
    elif backend == "postgresql":
        # A half-open connection must fail, not hang a run: bounded connect, TCP keepalives.
        options["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "keepalives": 1,
            "keepalives_idle": 30,
        }
    elif backend in ("mysql", "mariadb"):
        options["connect_args"] = {
            "charset": "utf8mb4",
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": STATEMENT_TIMEOUT_S,
            "write_timeout": STATEMENT_TIMEOUT_S,
        }
    options.update(kwargs)
    try:
        engine = sa.create_engine(parsed, **options)
    except ModuleNotFoundError as exc:
        extra = _EXTRA_FOR_DRIVER.get(exc.name or "", "postgres or mysql")
        raise ConfigError(
            "database_url", f"the driver {exc.name!r} is not installed; install flowsync[{extra}]"
        ) from None
    except (SQLAlchemyError, ValueError) as exc:
        raise ConfigError("database_url", f"cannot be used ({exc})") from None
    if backend == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            if sqlite_path(engine.url) is not None:
                cursor.execute("PRAGMA journal_mode=WAL")
                # With WAL, NORMAL is still crash-safe for the database; it only skips an fsync per commit.
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get("flowsync_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def schema_revisions(engine: Engine) -> set[str]:
    """The Alembic revisions the database is at (empty when flowsync never created its tables)."""
    path = sqlite_path(engine.url)
    if path is not None and not path.exists():
        return set()  # do not let the check itself create an empty database file
    with reading(engine) as connection:
        if not sa.inspect(connection).has_table(alembic_version.name):
            return set()
        return set(connection.scalars(sa.select(alembic_version.c.version_num)))


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only connection (no write lock on SQLite); database failures become `StoreError`."""
    try:
        with engine.connect().execution_options(**READ_ONLY) as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the database at {safe_url(engine.url)}: {short_error(exc)}") from exc


def check_schema(engine: Engine, heads: set[str], known: set[str]) -> None:
    """Refuse to sync against a database that is missing, behind or ahead of this flowsync."""
    current = schema_revisions(engine)
    where = safe_url(engine.url)
    if not current:
        raise SchemaError(f"the database {where} has no flowsync tables yet: run `flowsync db upgrade`")
    if current == heads:
        return
    if current <= known:
        raise SchemaError(
            f"the database {where} is at schema revision {', '.join(sorted(current))}, "
            f"behind this flowsync ({', '.join(sorted(heads))}): run `flowsync db upgrade`"
        )
    raise SchemaError(
        f"the database {where} is at schema revision {', '.join(sorted(current))}, which this flowsync "
        "does not know: a newer flowsync migrated it; upgrade flowsync"
    )


def short_error(exc: BaseException) -> str:
    """A database error as one readable line, without the SQL statement and parameters."""
    original = getattr(exc, "orig", None) or exc
    text = " ".join(str(original).split())
    return f"{type(original).__name__}: {text[:300]}"
