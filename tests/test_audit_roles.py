"""The roles of `docs/roles/` keep the audit trail: nobody rewrites an event, only prune deletes errors.

Each test runs the documented script on a fresh PostgreSQL or MariaDB database, syncs as the
writer (so the history is the one a real deployment has), and then connects as each account.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sync.simulator import Fault, SimulatorConfig, running_simulator
from sync.store.schema import flow_history, sync_runs
from tests.process import flowsync, flowsync_env
from tests.roles import Accounts, documented_roles

CONFIGURATION = flow_history.c.event != "error"


@pytest.fixture
def accounts(server_database_url: str) -> Iterator[Accounts]:
    """The documented accounts, after three syncs as the writer: flows 1-4 created, flow 5 failing."""
    with documented_roles(server_database_url) as made:
        with running_simulator(SimulatorConfig(flow_count=5)) as sim:
            sim.faults.persist(5, Fault.html())
            for _ in range(3):
                result = flowsync("sync", env=flowsync_env(sim, made.urls["writer"], "1-5"))
                assert result.returncode == 1, result.stderr  # a sync as the writer works; flow 5 fails
        yield made


def history(accounts: Accounts) -> list[tuple[int, str, object]]:
    with accounts.owner.connect() as connection:
        query = sa.select(flow_history.c.id, flow_history.c.event, flow_history.c.snapshot)
        return [tuple(row) for row in connection.execute(query.order_by(flow_history.c.id))]


def refused(accounts: Accounts, account: str, statement: sa.Executable) -> str:
    """What the database says when `account` runs `statement` (the test fails if it is allowed)."""
    engine = accounts.owner if account == "owner" else accounts.engine(account)
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as connection:
            connection.execute(statement)
    finally:
        if engine is not accounts.owner:
            engine.dispose()
    return str(caught.value.orig)


def first_configuration_event() -> sa.ColumnElement[bool]:
    first = sa.select(sa.func.min(flow_history.c.id)).where(CONFIGURATION).scalar_subquery()
    return flow_history.c.id == first


def test_no_account_can_change_or_delete_a_configuration_event(accounts: Accounts) -> None:
    """The writer and the maintenance account lack the privilege; the owner meets the trigger."""
    events = history(accounts)
    assert [event for _, event, _ in events].count("created") == 4
    some_id = next(i for i, event, _ in events if event == "created")
    edit = flow_history.update().where(flow_history.c.id == some_id).values(flow_id=99)
    erase = flow_history.delete().where(flow_history.c.id == some_id)
    for account in ("writer", "maintenance"):
        assert "denied" in refused(accounts, account, edit).lower()
    assert "denied" in refused(accounts, "writer", erase).lower()
    for account in ("maintenance", "owner"):
        assert "flow_history is append-only" in refused(accounts, account, erase)
    assert "flow_history is append-only" in refused(accounts, "owner", edit)
    forged = flow_history.update().where(flow_history.c.id == some_id).values(snapshot={"forged": True})
    assert "flow_history is append-only" in refused(accounts, "owner", forged)
    assert "flow_history is append-only" in refused(
        accounts, "owner", flow_history.delete().where(CONFIGURATION)
    )
    assert history(accounts) == events


def test_an_error_event_can_be_changed_by_nobody_and_deleted_only_with_the_privilege(
    accounts: Accounts,
) -> None:
    """Error events are outside the chain, so the maintenance account may delete them; no one edits them."""
    events = history(accounts)
    error_id = next(i for i, event, _ in events if event == "error")
    erase = flow_history.delete().where(flow_history.c.id == error_id)
    assert "denied" in refused(accounts, "writer", erase).lower()
    assert "flow_history is append-only" in refused(
        accounts, "owner", flow_history.update().where(flow_history.c.id == error_id).values(error_code="0")
    )
    maintenance = accounts.engine("maintenance")
    try:
        with maintenance.begin() as connection:
            assert connection.execute(erase).rowcount == 1
    finally:
        maintenance.dispose()
    assert history(accounts) == [event for event in events if event[0] != error_id]


def test_prune_works_as_the_maintenance_account_and_fails_clearly_as_the_writer(accounts: Accounts) -> None:
    """The writer cannot prune (and is told which account can); the maintenance account prunes."""
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    before = history(accounts)
    as_writer = flowsync("prune", "--before", tomorrow, env=flowsync_env(None, accounts.urls["writer"], None))
    assert as_writer.returncode == 1
    assert "the database refused to prune flow_history" in as_writer.stderr
    assert "run it as the maintenance account (docs/roles)" in as_writer.stderr
    assert history(accounts) == before

    env = flowsync_env(None, accounts.urls["maintenance"], None)
    as_maintenance = flowsync("prune", "--before", tomorrow, env=env)
    assert as_maintenance.returncode == 0, as_maintenance.stderr
    # Run 3 is the latest run and the latest success: it keeps its error; runs 1 and 2 lose theirs,
    # and run 2, which has nothing else, goes.
    assert as_maintenance.stdout.splitlines()[0].startswith("flow_history: deleted 2 error events")
    assert as_maintenance.stdout.splitlines()[1].startswith("sync_runs: deleted 1 runs")
    after = history(accounts)
    assert [e for e in after if e[1] != "error"] == [e for e in before if e[1] != "error"]
    assert [e[1] for e in after].count("error") == 1
    with accounts.owner.connect() as connection:
        assert list(connection.scalars(sa.select(sync_runs.c.id).order_by(sync_runs.c.id))) == [1, 3]
    status = flowsync("status", env=env)
    assert status.returncode == 0, status.stderr


def test_a_column_a_later_migration_adds_can_still_be_filled(accounts: Accounts) -> None:
    """The guard covers the recorded columns only: an upgrade can add a column and fill it for
    every event, as a migration that chains the history does."""
    with accounts.owner.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE flow_history ADD COLUMN later_note VARCHAR(16)")
        filled = connection.exec_driver_sql("UPDATE flow_history SET later_note = 'filled'").rowcount
        same = connection.execute(flow_history.update().values(event=flow_history.c.event)).rowcount
    assert filled == same == len(history(accounts))
