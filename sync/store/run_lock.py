"""One run at a time per database, with locks that die with their holder.

A lease row would have to expire before a killed run's lock could be taken
again; these locks are released by the operating system or the database server
the moment the holding process or connection goes away:

- SQLite: `flock` on a file beside the database (`flowsync.db.lock`).
- PostgreSQL: `pg_try_advisory_lock` on a dedicated connection (session level, so
  it survives commits; the connection is closed in every exit path).
- MariaDB/MySQL: `GET_LOCK` on a dedicated connection, named after the database
  so two flowsync databases on one server do not block each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from sync.errors import LockHeld, StoreError
from sync.store.database import safe_url, short_error, sqlite_path

POLL_S = 0.1


def lock_name(engine: Engine) -> str:
    """The server-wide lock name for this database (MySQL caps names at 64 characters)."""
    name = f"flowsync:{engine.url.database or ''}"
    if len(name) > 64:
        name = "flowsync:" + hashlib.sha256(name.encode()).hexdigest()[:40]
    return name


def lock_key(engine: Engine) -> int:
    """A signed 64-bit advisory-lock key derived from the lock name (PostgreSQL)."""
    digest = hashlib.sha256(lock_name(engine).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class HeldLock:
    """A lock this process holds; `verify` says whether it still does."""

    def verify(self) -> None:
        """Raise `StoreError` if the lock was lost (nothing can take a file lock from its holder)."""


class _SessionLock(HeldLock):
    """A server-side lock that lives exactly as long as one database session."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def verify(self) -> None:
        # If the server ended the session (restart, killed connection), the lock went with it and
        # another run may already hold it: this run must stop writing.
        try:
            self._connection.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StoreError(f"lost the database session holding the run lock ({short_error(exc)})") from exc


@contextlib.contextmanager
def run_lock(
    engine: Engine, wait_s: float = 0.0, on_wait: Callable[[], None] = lambda: None
) -> Iterator[HeldLock]:
    """Hold the run lock of `engine`'s database; `LockHeld` if another run has it after `wait_s`.

    `on_wait` is called once if the lock is held by another run and this one is going to wait for it,
    so that a caller can say it is waiting rather than appear to hang.
    """
    backend = engine.url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(engine.url)
        if path is None:  # an in-memory database belongs to one process anyway
            yield HeldLock()
            return
        with _file_lock(path.with_name(path.name + ".lock"), wait_s, on_wait):
            yield HeldLock()
        return
    if backend not in ("postgresql", "mysql", "mariadb"):
        raise StoreError(f"no run lock is known for {backend}; use SQLite, PostgreSQL or MariaDB/MySQL")
    try:
        connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot connect to {safe_url(engine.url)}: {short_error(exc)}") from exc
    try:
        if backend == "postgresql":
            _take_postgres_lock(connection, lock_key(engine), wait_s, on_wait)
        else:
            _take_mysql_lock(connection, lock_name(engine), wait_s, on_wait)
        try:
            yield _SessionLock(connection)
        finally:
            _release_server_lock(connection, backend, engine)
    finally:
        with contextlib.suppress(SQLAlchemyError):
            connection.close()


@contextlib.contextmanager
def _file_lock(path: Path, wait_s: float, on_wait: Callable[[], None]) -> Iterator[None]:
    deadline = time.monotonic() + wait_s
    waiting = False
    with path.open("a+") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(
                        f"another flowsync run holds the lock {path} (process {_holder(path)})"
                    ) from None
                if not waiting:
                    waiting = True
                    on_wait()
                time.sleep(POLL_S)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _take_postgres_lock(connection: Connection, key: int, wait_s: float, on_wait: Callable[[], None]) -> None:
    deadline = time.monotonic() + wait_s
    waiting = False
    while not connection.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
        if time.monotonic() >= deadline:
            raise LockHeld("another flowsync run holds this database's advisory lock")
        if not waiting:
            waiting = True
            on_wait()
        time.sleep(POLL_S)


def _take_mysql_lock(connection: Connection, name: str, wait_s: float, on_wait: Callable[[], None]) -> None:
    got = connection.scalar(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": name})
    if got != 1 and wait_s > 0:
        on_wait()
        got = connection.scalar(sa.text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait_s})
    if got != 1:
        raise LockHeld(f"another flowsync run holds the lock {name!r}")


def _release_server_lock(connection: Connection, backend: str, engine: Engine) -> None:
    # If the connection is gone the server has already dropped the lock with it.
    with contextlib.suppress(SQLAlchemyError):
        if backend == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(engine)})
        else:
            connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name(engine)})
