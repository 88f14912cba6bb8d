"""Shared fixtures: a fresh database on each backend, the simulator, and settings pointing at both.

Every test that touches a database takes `database_url` (or `engine`) and so runs on
SQLite, PostgreSQL and MariaDB. The servers come from environment variables naming
an administrative URL; each test gets its own freshly created database there and
drops it afterwards. A variable that is not set at all is filled in when a server
answers at its usual local address (PostgreSQL as `postgres` on 127.0.0.1:5432, MariaDB as
`root` on 127.0.0.1:3306), so `make test` covers the servers a machine has; one set to
the empty string keeps that server out. Without a server the variant is skipped with the
reason, unless FLOWSYNC_TEST_REQUIRE_SERVERS=1 (as in CI), which makes it fail. The run
ends with a line saying which databases it covered.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine, make_url

from sync.app.settings import Settings
from sync.core.selection import parse_flow_ids
from sync.simulator import SimulatorConfig, SimulatorHandle, running_simulator
from sync.store import migrate
from sync.store.database import create_engine
from sync.store.database import database_url as url_with_driver

SERVER_ENV = {
    "postgresql": "FLOWSYNC_TEST_POSTGRES_URL",  # e.g. postgresql://postgres@127.0.0.1:5432/postgres
    "mariadb": "FLOWSYNC_TEST_MYSQL_URL",  # e.g. mysql://root@127.0.0.1:3306/mysql
}
REQUIRE_SERVERS = os.environ.get("FLOWSYNC_TEST_REQUIRE_SERVERS") == "1"
BACKENDS = ["sqlite", "postgresql", "mariadb"]
# Where a development machine (and CI, see .ci/run) has its servers, and how to log in there.
LOCAL_SERVERS = {
    "postgresql": ("127.0.0.1", 5432, "postgresql://postgres@127.0.0.1:5432/postgres"),
    "mariadb": ("127.0.0.1", 3306, "mysql://root@127.0.0.1:3306/mysql"),
}
PROBE_TIMEOUT_S = 0.5  # nothing listening answers at once; a filtered port must not stall the run
SERVER_SOURCES: dict[str, str] = {}  # backend -> where its URL came from, for the closing summary


def pytest_configure(config: pytest.Config) -> None:
    """Use the servers that answer at their usual local addresses when no variable names one.

    It runs before pytest-xdist starts its workers, which inherit the variables set here.
    """
    for backend, variable in SERVER_ENV.items():
        if variable in os.environ:
            given = "set" if os.environ[variable] else "set empty, so not used"
            SERVER_SOURCES.setdefault(backend, f"{variable} {given}")
            continue
        host, port, url = LOCAL_SERVERS[backend]
        problem = probe_server(host, port, url)
        if problem is None:
            os.environ[variable] = url
            SERVER_SOURCES[backend] = f"found at {host}:{port} ({variable} was not set)"
        else:
            SERVER_SOURCES[backend] = f"{variable} not set, and none usable at {host}:{port}: {problem}"


def probe_server(host: str, port: int, url: str) -> str | None:
    """None when `url` logs in and answers a query; otherwise why not, in a few words."""
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    engine = sa.create_engine(database_url_for(url), connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        return type(getattr(exc, "orig", None) or exc).__name__
    finally:
        engine.dispose()
    return None


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's FLOWSYNC_* variables or ./flowsync.toml, or leaks log handlers."""
    for name in list(os.environ):
        if name.startswith("FLOWSYNC_") and not name.startswith("FLOWSYNC_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def server_admin_url(backend: str) -> str:
    """The administrative URL for a server backend, or skip/fail the test when it is not configured."""
    variable = SERVER_ENV[backend]
    url = os.environ.get(variable)
    if not url:
        message = f"{variable} is not set, so there is no {backend} server to test against"
        if REQUIRE_SERVERS:
            pytest.fail(message)
        pytest.skip(message)
    return url


@contextmanager
def fresh_database(backend: str, tmp_path: Path, name: str = "flowsync") -> Iterator[str]:
    """A URL for an empty database of `backend`, dropped (or left in tmp_path) afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    admin_url = database_url_for(server_admin_url(backend))
    database = f"{name}_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        suffix = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if backend == "mariadb" else ""
        connection.exec_driver_sql(f"CREATE DATABASE {database}{suffix}")
    try:
        yield admin_url.set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}{force}")
        admin.dispose()


def backend_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    return "mariadb" if name in ("mysql", "mariadb") else name


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database of one backend, removed after the test."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def other_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same backend (and server) as `database_url`."""
    with fresh_database(backend_of(database_url), tmp_path, name="other") as url:
        yield url


@pytest.fixture(params=[b for b in BACKENDS if b != "sqlite"])
def server_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each database server, for behaviour only servers have (lost connections)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


def database_url_for(url: str) -> sa.URL:
    return url_with_driver(make_url(url).render_as_string(hide_password=False))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database already at the latest migration."""
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    """The simulator with 20 flows and no latency."""
    with running_simulator(SimulatorConfig(flow_count=20, seed=1)) as handle:
        yield handle


def settings_for(
    sim: SimulatorHandle, database_url: str, flow_ids: str = "1-20", **extra: object
) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "base_url": sim.base_url,
        "api_key": sim.config.api_key,
        "api_secret": SecretStr(sim.config.api_secret),
        "flow_ids": parse_flow_ids(flow_ids),
        "concurrency": 4,
        "timeout_s": 2,
        "retries": 2,
    }
    values.update(extra)
    return Settings.model_validate(values)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many tests ran on each database, so a CI log shows the servers were really used."""
    ran: dict[str, int] = dict.fromkeys(BACKENDS, 0)
    skipped: dict[str, int] = dict.fromkeys(BACKENDS, 0)
    for outcome, counts in (("passed", ran), ("failed", ran), ("skipped", skipped)):
        for report in terminalreporter.stats.get(outcome, []):
            for backend in BACKENDS:
                if (
                    f"[{backend}" in report.nodeid
                    or f"-{backend}]" in report.nodeid
                    or f"-{backend}-" in report.nodeid
                ):
                    counts[backend] += 1
    summary = ", ".join(f"{b} {ran[b]} ran / {skipped[b]} skipped" for b in BACKENDS)
    terminalreporter.write_line(f"database variants: {summary}")
    covered = [b for b in BACKENDS if ran[b]]
    missed = [b for b in BACKENDS if skipped[b] and not ran[b]]
    line = f"databases covered: {', '.join(covered) or 'none (no test that ran touches a database)'}"
    if missed:
        reasons = "; ".join(f"{b}: {SERVER_SOURCES.get(b, 'not configured')}" for b in missed)
        line += f"; NOT covered: {', '.join(missed)} ({reasons})"
    terminalreporter.write_line(line, bold=bool(missed), red=bool(missed))
