"""What the writer does when the database refuses one flow, or cannot read one flow's stored row.

The refusal is real: a trigger on `flow_nodes` rejects one channel value on each backend,
as a constraint added by a DBA would. The flow is recorded with `error_kind` `database`
(not as an API error), and every other flow of the batch is still written.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.app.settings import Settings
from sync.pipeline.loop import RunReport
from sync.simulator import SimulatorHandle
from sync.store.schema import flow_history, flows
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger
from tests.conftest import backend_of, settings_for
from tests.tables import served_snapshot, stored_snapshot

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)
REFUSED_CHANNEL = "fax"

REFUSING_TRIGGER = {
    "sqlite": [
        f"""CREATE TRIGGER refuse_channel BEFORE INSERT ON flow_nodes
        WHEN NEW.channel = '{REFUSED_CHANNEL}'
        BEGIN SELECT RAISE(ABORT, 'this channel is not allowed here'); END"""
    ],
    "postgresql": [
        f"""CREATE FUNCTION refuse_channel() RETURNS trigger AS $$
        BEGIN
            IF NEW.channel = '{REFUSED_CHANNEL}' THEN
                RAISE EXCEPTION 'this channel is not allowed here';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER refuse_channel BEFORE INSERT ON flow_nodes
        FOR EACH ROW EXECUTE FUNCTION refuse_channel()""",
    ],
    "mariadb": [
        f"""CREATE TRIGGER refuse_channel BEFORE INSERT ON flow_nodes FOR EACH ROW
        BEGIN
            IF NEW.channel = '{REFUSED_CHANNEL}' THEN
                SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'this channel is not allowed here';
            END IF;
        END""",
    ],
}


def sync(settings: Settings, engine: Engine) -> RunReport:
    return jobs.sync_once(settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST)


def errors(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        query = sa.select(flow_history).where(flow_history.c.event == "error").order_by(flow_history.c.id)
        return [dict(row._mapping) for row in connection.execute(query)]


def test_a_flow_the_database_refuses_is_a_database_error_and_the_rest_are_written(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """One refused flow is recorded with error_kind 'database'; its stored state and the others' survive."""
    settings = settings_for(sim, database_url, "1-5")
    assert sync(settings, engine).status == "ok"
    with engine.begin() as connection:
        for statement in REFUSING_TRIGGER[backend_of(database_url)]:
            connection.exec_driver_sql(statement)
    before = stored_snapshot(engine, 3)
    sim.catalog.mutate(1.0, random.Random(5))
    served = sim.catalog.get(3)
    assert served is not None
    served["flow"][0]["channel"] = REFUSED_CHANNEL
    sim.catalog.put(served)
    report = sync(settings, engine)
    assert (report.status, report.counts.failed, report.counts.changed) == ("partial", 1, 4)
    (error,) = errors(engine)
    assert (error["flow_id"], error["error_kind"]) == (3, "database")
    assert "the database refused this flow's values" in error["error_message"]
    assert "this channel is not allowed here" in error["error_message"]
    assert stored_snapshot(engine, 3) == before
    for flow_id in (1, 2, 4, 5):
        assert stored_snapshot(engine, flow_id) == served_snapshot(sim, flow_id)


CORRUPT_TIMESTAMP = {"sqlite": "garbage", "mariadb": "0000-00-00 00:00:00"}


@pytest.mark.parametrize("database_url", list(CORRUPT_TIMESTAMP), indirect=True)
@pytest.mark.parametrize("column", ["first_seen_at", "last_changed_at"])
def test_a_flow_whose_stored_row_is_corrupt_fails_alone(
    engine: Engine, sim: SimulatorHandle, database_url: str, column: str
) -> None:
    """An unreadable timestamp fails that flow, by key; the others sync.

    SQLite keeps any text in a timestamp column, and MariaDB a zero date under its default
    SQL mode; PostgreSQL refuses both, so it has nothing to test here.
    """
    settings = settings_for(sim, database_url, "1-5")
    assert sync(settings, engine).status == "ok"
    corrupt = CORRUPT_TIMESTAMP[backend_of(database_url)]
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE flows SET {column} = :value WHERE flow_id = 2"), {"value": corrupt}
        )
    sim.catalog.mutate(1.0, random.Random(5))
    report = sync(settings, engine)
    assert (report.status, report.counts.failed, report.counts.changed) == ("partial", 1, 4)
    (error,) = errors(engine)
    assert (error["flow_id"], error["error_kind"]) == (2, "database")
    assert error["error_message"] == f"its stored row is corrupt: flows.{column} is not a timestamp"
    with engine.connect() as connection:
        raw = connection.execute(
            sa.text(f"SELECT CAST({column} AS CHAR) AS raw, sync_state FROM flows WHERE flow_id = 2")
        ).one()
        assert (str(raw.raw).startswith(corrupt[:10]), raw.sync_state) == (True, "error"), "left as it was"
        assert connection.scalar(sa.select(sa.func.count()).select_from(flows)) == 5
    for flow_id in (1, 3, 4, 5):
        assert stored_snapshot(engine, flow_id) == served_snapshot(sim, flow_id)
