"""PostgreSQL and MariaDB as first-class targets: locks, types, privileges, and losing the server."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from sync.core.outcomes import RunCounts
from sync.errors import LockHeld
from sync.simulator import Fault, SimulatorConfig, running_simulator
from sync.store import migrate
from sync.store.database import create_engine
from sync.store.run_lock import run_lock
from sync.store.schema import flow_history, flows, sync_runs
from tests.conftest import backend_of, database_url_for, server_admin_url
from tests.process import flowsync, flowsync_env, start_flowsync, wait_for
from tests.roles import documented_roles
from tests.tables import assert_every_flow_whole
from tests.test_processes import flow_count, runs


def test_two_databases_on_one_server_do_not_share_a_lock(database_url: str, other_database_url: str) -> None:
    """The run lock is scoped to its database: holding one leaves the other free."""
    first, second = create_engine(database_url), create_engine(other_database_url)
    try:
        with run_lock(first), run_lock(second):
            for engine in (first, second):
                with pytest.raises(LockHeld), run_lock(engine):
                    pass
    finally:
        first.dispose()
        second.dispose()


def test_a_migration_waits_for_the_run_lock(database_url: str) -> None:
    """`db upgrade` takes the run lock, so it never runs beside a sync or another upgrade."""
    engine = create_engine(database_url)
    try:
        with run_lock(engine), pytest.raises(LockHeld):
            migrate.upgrade(engine, lock_wait_s=0.3)
        migrate.upgrade(engine, lock_wait_s=0.3)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC),
        datetime(2026, 3, 29, 3, 30, 15, 999999, tzinfo=timezone(timedelta(hours=2))),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-8))),
    ],
)
def test_timestamps_come_back_utc_aware_and_equal(engine: sa.Engine, moment: datetime) -> None:
    """Any aware time is stored as UTC and read back aware, equal, with its microseconds."""
    with engine.begin() as connection:
        connection.execute(
            flows.insert().values(
                flow_id=1,
                name="clock",
                node_count=0,
                content_hash="0" * 64,
                first_seen_at=moment,
                last_changed_at=moment,
                sync_state="ok",
            )
        )
    with engine.connect() as connection:
        stored = connection.scalar(sa.select(flows.c.first_seen_at))
    assert stored == moment
    assert stored.tzinfo is UTC


def test_json_documents_round_trip_unchanged(engine: sa.Engine) -> None:
    """Unicode, quotes, backslashes, nested lists and nulls in JSON columns read back equal."""
    changes = [
        {"field": "name", "old": 'Login "OTP" \\ v1', "new": "登录验证码 ✓ 🚀"},
        {"field": "nodes[3]", "old": None, "new": {"waiting_time": 60, "channel": "call", "channel_cut": 0}},
        {"field": "nodes[1].status", "old": [1, [2, [3]]], "new": {"deep": {"er": [None, True, 1.5]}}},
    ]
    snapshot = {"flow_id": 7, "name": "Ünïcødé 'quoted'", "nodes": []}
    with engine.begin() as connection:
        inserted = connection.execute(
            sync_runs.insert().values(
                started_at=datetime.now(UTC),
                triggered_by="manual",
                status="ok",
                **RunCounts().as_columns(),
            )
        ).inserted_primary_key
        assert inserted is not None
        run_id = inserted[0]
        connection.execute(
            flow_history.insert().values(
                run_id=run_id,
                flow_id=7,
                occurred_at=datetime.now(UTC),
                event="changed",
                changes=changes,
                snapshot=snapshot,
            )
        )
        connection.execute(
            flow_history.insert().values(
                run_id=run_id, flow_id=7, occurred_at=datetime.now(UTC), event="deleted"
            )
        )
    with engine.connect() as connection:
        first, second = connection.execute(
            sa.select(flow_history.c.changes, flow_history.c.snapshot).order_by(flow_history.c.id)
        ).all()
        nulls = connection.scalar(sa.select(sa.func.count()).where(flow_history.c.snapshot.is_(None)))
    assert (first.changes, first.snapshot) == (changes, snapshot)
    assert (second.changes, second.snapshot) == (None, None)
    assert nulls == 1, "a missing snapshot is SQL NULL, not the JSON document null"


def _terminate_other_connections(database_url: str) -> int:
    """End every server session on this database except our own, as a restart or a DBA would."""
    backend = backend_of(database_url)
    database = sa.make_url(database_url).database
    admin = sa.create_engine(database_url_for(server_admin_url(backend)), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            if backend == "postgresql":
                query = (
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                )
                return int(connection.execute(sa.text(query), {"db": database}).scalar() or 0)
            ids = connection.execute(
                sa.text(
                    "SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"
                ),
                {"db": database},
            ).scalars()
            killed = 0
            for session in list(ids):
                connection.exec_driver_sql(f"KILL {int(session)}")
                killed += 1
            return killed
    finally:
        admin.dispose()


def test_losing_the_server_mid_run_fails_the_run_and_the_worker_recovers(server_database_url: str) -> None:
    """Killed sessions end the run as failed, leave no half-written flow, and the next run succeeds."""
    engine = create_engine(server_database_url)
    migrate.upgrade(engine)
    try:
        with running_simulator(SimulatorConfig(flow_count=40, seed=4)) as sim:
            sim.faults.set_random(1.0, [Fault.delay(0.1)])
            env = flowsync_env(
                sim, server_database_url, "1-40", FLOWSYNC_CONCURRENCY="2", FLOWSYNC_INTERVAL="0.5"
            )
            worker = start_flowsync("run", env=env)
            try:
                wait_for(lambda: flow_count(engine) >= 3, "the first run to store a few flows")
                assert _terminate_other_connections(server_database_url) >= 1
                wait_for(lambda: _statuses(engine)[:1] == ["failed"], "the interrupted run to be recorded")
                sim.faults.set_random(0.0, [])
                wait_for(lambda: "ok" in _statuses(engine), "a later run to succeed")
                worker.send_signal(signal.SIGTERM)
                _, stderr = worker.communicate(timeout=30)
            finally:
                worker.kill()
            assert worker.returncode == 0, stderr
            first = runs(engine)[0]
            assert "database" in str(first["error_message"])
            assert first["finished_at"] is not None
            assert flow_count(engine) == 40
            assert_every_flow_whole(engine, sim)
    finally:
        engine.dispose()


def _statuses(engine: sa.Engine) -> list[str]:
    return [str(run["status"]) for run in runs(engine)]


def test_least_privilege_roles_from_the_docs_work(server_database_url: str) -> None:
    """The documented writer account can sync; the reader can read everything and write nothing."""
    with documented_roles(server_database_url) as accounts:
        with running_simulator(SimulatorConfig(flow_count=5)) as sim:
            sim.faults.persist(5, Fault.html())
            for _ in range(2):
                result = flowsync("sync", env=flowsync_env(sim, accounts.urls["writer"], "1-5"))
                assert result.returncode == 1, result.stderr  # flow 5 fails: an error row is written too
        reader_engine = accounts.engine("reader")
        try:
            with reader_engine.connect() as connection:
                assert connection.scalar(sa.select(sa.func.count()).select_from(flows)) == 4
                with pytest.raises(sa.exc.DBAPIError):
                    connection.execute(flows.delete())
        finally:
            reader_engine.dispose()
