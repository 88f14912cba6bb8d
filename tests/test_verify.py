"""`flowsync verify`: a history that agrees passes with its head; each kind of tampering is reported by key.

A scripted history runs against the simulator on every backend; then one thing is altered
behind flowsync's back, as someone with write access to the database could, and `verify`
must say which table and which row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync.core.audit import Disagreement
from sync.core.chain import ChainedEvent, ChainHasher
from sync.simulator import Fault, SimulatorConfig, SimulatorHandle, running_simulator
from sync.store.schema import (
    flow_changes,
    flow_history,
    flow_nodes,
    flow_version_nodes,
    flow_versions,
    flows,
    sync_runs,
)
from sync.store.verify import Verification
from tests.conftest import settings_for
from tests.process import flowsync, flowsync_env
from tests.roles import documented_roles
from tests.test_analyst_layer import FLOW_1, FLOW_2, FLOW_3, play_history, sync


@pytest.fixture
def scripted() -> Iterator[SimulatorHandle]:
    with running_simulator(SimulatorConfig(flow_count=0)) as handle:
        for flow in (FLOW_1, FLOW_2, FLOW_3):
            handle.catalog.put(flow)
        yield handle


@pytest.fixture
def played(engine: Engine, scripted: SimulatorHandle, database_url: str) -> Engine:
    """A database holding the analyst layer's six-run history."""
    play_history(scripted, settings_for(scripted, database_url, "1-3"), engine)
    return engine


def verify(engine: Engine, chain: ChainHasher | None = None) -> tuple[list[Disagreement], Verification]:
    verification = Verification(engine, chain or ChainHasher())
    return list(verification), verification


def events(connection: Connection, *kinds: str) -> list[sa.Row[Any]]:
    query = sa.select(flow_history).order_by(flow_history.c.id)
    if kinds:
        query = query.where(flow_history.c.event.in_(kinds))
    return list(connection.execute(query))


def keys(found: list[Disagreement]) -> set[tuple[str, str]]:
    return {(d.table, d.key) for d in found}


def test_an_untouched_history_agrees_and_gives_its_head(played: Engine) -> None:
    """Nothing altered: no disagreement, and the head is the latest run's history_head."""
    found, verification = verify(played)
    assert found == []
    with played.connect() as connection:
        head = connection.scalar(sa.select(sync_runs.c.history_head).order_by(sync_runs.c.id.desc()).limit(1))
    assert verification.summary.head == head is not None
    assert verification.summary.configuration_events >= 8
    assert verification.summary.events > verification.summary.configuration_events


def test_verify_with_the_wrong_kind_of_chain_reports_every_event(played: Engine) -> None:
    """A plain chain checked under a key fails at every configuration event, and says it checked an HMAC."""
    found, verification = verify(played, ChainHasher.keyed("not the key it was written with"))
    assert verification.summary.chain == "hmac-sha256"
    chain_breaks = [d for d in found if d.table == "flow_history"]
    assert len(chain_breaks) == verification.summary.configuration_events


def _edit_event(connection: Connection) -> tuple[str, str]:
    """A `changed` event's snapshot gets another name, as if the vendor had sent it."""
    row = events(connection, "changed")[0]
    snapshot = dict(row.snapshot, name="Forged name")
    connection.execute(flow_history.update().where(flow_history.c.id == row.id).values(snapshot=snapshot))
    return "flow_history", f"id={row.id}"


def _delete_event(connection: Connection) -> tuple[str, str]:
    """A `created` event (it has no changed values) disappears; the event after it no longer follows."""
    chained = events(connection, "created", "changed", "deleted", "restored")
    connection.execute(flow_history.delete().where(flow_history.c.id == chained[1].id))
    return "flow_history", f"id={chained[2].id}"


def _insert_event(connection: Connection) -> tuple[str, str]:
    """A forged `changed` event at the end, with a chain_hash recomputed as a writer without the key could."""
    chained = events(connection, "created", "changed", "deleted", "restored")
    last = chained[-1]
    highest = connection.scalar(sa.select(sa.func.max(flow_history.c.id)))
    assert highest is not None
    forged: dict[str, Any] = {
        "id": highest + 1,
        "run_id": last.run_id,
        "flow_id": 2,
        "occurred_at": last.occurred_at,
        "event": "changed",
        "changes": [{"field": "name", "old": "Signup OTP", "new": "Forged"}],
        "snapshot": {"flow_id": 2, "name": "Forged", "nodes": []},
        "content_hash": "0" * 64,
    }
    forged["chain_hash"] = ChainHasher().link(last.chain_hash, ChainedEvent(**forged))
    connection.execute(flow_history.insert().values(forged))
    latest_run = connection.scalar(sa.select(sa.func.max(sync_runs.c.id)))
    return "sync_runs", f"id={latest_run}"


def _swap_events(connection: Connection) -> tuple[str, str]:
    """Two configuration events trade places: everything but their ids is exchanged."""
    first, second = events(connection, "created")[:2]
    columns = [c.name for c in flow_history.columns if c.name != "id"]
    for row, other in ((first, second), (second, first)):
        connection.execute(
            flow_history.update()
            .where(flow_history.c.id == row.id)
            .values({c: other._mapping[c] for c in columns})
        )
    return "flow_history", f"id={first.id}"


def _truncate_tail(connection: Connection) -> tuple[str, str]:
    """The latest run's configuration events vanish, with the rows derived from them."""
    latest_run = connection.scalar(
        sa.select(sa.func.max(flow_history.c.run_id)).where(flow_history.c.chain_hash.is_not(None))
    )
    doomed = [
        r.id
        for r in events(connection, "created", "changed", "deleted", "restored")
        if r.run_id == latest_run
    ]
    assert doomed
    connection.execute(flow_changes.delete().where(flow_changes.c.history_id.in_(doomed)))
    connection.execute(flow_history.delete().where(flow_history.c.id.in_(doomed)))
    return "sync_runs", f"id={latest_run}"


def _edit_current_node(connection: Connection) -> tuple[str, str]:
    connection.execute(
        flow_nodes.update()
        .where(flow_nodes.c.flow_id == 1, flow_nodes.c.position == 1)
        .values(waiting_time=flow_nodes.c.waiting_time + 1)
    )
    return "flow_nodes", "flow_id=1, position=1"


def _delete_version(connection: Connection) -> tuple[str, str]:
    where = (flow_versions.c.flow_id == 1, flow_versions.c.version_no == 1)
    connection.execute(
        flow_version_nodes.delete().where(
            flow_version_nodes.c.flow_id == 1, flow_version_nodes.c.version_no == 1
        )
    )
    connection.execute(flow_versions.delete().where(*where))
    return "flow_versions", "flow_id=1, version_no=1"


TAMPERING: dict[str, Callable[[Connection], tuple[str, str]]] = {
    "edited event": _edit_event,
    "deleted event": _delete_event,
    "inserted event": _insert_event,
    "swapped events": _swap_events,
    "truncated tail": _truncate_tail,
    "edited current node": _edit_current_node,
    "deleted version": _delete_version,
}


@pytest.mark.parametrize("tampering", TAMPERING.values(), ids=TAMPERING.keys())
def test_each_kind_of_tampering_is_reported_by_table_and_key(
    played: Engine, tampering: Callable[[Connection], tuple[str, str]]
) -> None:
    """Altered behind flowsync's back, the history no longer verifies, and the report names the row."""
    with played.begin() as connection:
        where = tampering(connection)
    found, verification = verify(played)
    assert where in keys(found), [d.as_json() for d in found]
    assert not verification.summary.ok


def test_an_edited_event_is_reported_once(played: Engine) -> None:
    """The chain goes on from the stored hash, so one edited event is one chain disagreement."""
    with played.begin() as connection:
        table, key = _edit_event(connection)
    found, _ = verify(played)
    chain = [d for d in found if d.table == "flow_history"]
    assert [(d.table, d.key) for d in chain] == [(table, key)]
    assert "chain_hash does not match" in chain[0].problem


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_corrupt_row_is_reported_by_key_and_the_rest_still_checked(played: Engine) -> None:
    """An undecodable snapshot (SQLite keeps any text) is named by its id; a later edit is still found."""
    with played.begin() as connection:
        created = events(connection, "created")
        connection.execute(
            sa.text("UPDATE flow_history SET snapshot = '{not json' WHERE id = :id"), {"id": created[0].id}
        )
        table, key = _edit_current_node(connection)
    found, _ = verify(played)
    assert any(d.key == f"id={created[0].id}" and "snapshot is not valid JSON" in d.problem for d in found), (
        found
    )
    assert (table, key) in keys(found)


def test_the_command_exits_0_with_the_head_and_1_with_each_disagreement(
    played: Engine, database_url: str
) -> None:
    """`verify --format json` gives the head for `jq -r .head`; after tampering, exit 1 and the row."""
    env = flowsync_env(None, database_url, None)
    clean = flowsync("verify", "--format", "json", env=env)
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["ok"] is True
    assert report["chain"] == "sha256"
    assert report["disagreements"] == []
    assert len(report["head"]) == 64
    table = flowsync("verify", env=env)
    assert table.returncode == 0
    assert f"head: {report['head']}" in table.stdout
    assert "checked without an audit key" in table.stdout
    with played.begin() as connection:
        _edit_current_node(connection)
    broken = flowsync("verify", env=env)
    assert broken.returncode == 1
    assert "flow_nodes" in broken.stdout
    assert "flow_id=1, position=1" in broken.stdout
    assert "NOT verified" in broken.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_command_exits_2_without_a_usable_database(database_url: str) -> None:
    """No flowsync tables: exit 2, nothing else."""
    result = flowsync("verify", env=flowsync_env(None, database_url, None))
    assert result.returncode == 2
    assert "no usable database" in result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_command_checks_under_the_audit_key_without_showing_it(
    scripted: SimulatorHandle, database_url: str, engine: Engine
) -> None:
    """A keyed chain verifies with its key, fails without it, and the key is never printed."""
    key = "k3y-that-must-never-show"
    play_history(scripted, settings_for(scripted, database_url, "1-3", audit_key=key), engine)
    keyed = flowsync("-v", "verify", env=flowsync_env(None, database_url, None, FLOWSYNC_AUDIT_KEY=key))
    assert keyed.returncode == 0, keyed.stdout
    assert "HMAC-SHA-256 chain, checked under FLOWSYNC_AUDIT_KEY" in keyed.stdout
    plain = flowsync("verify", env=flowsync_env(None, database_url, None))
    assert plain.returncode == 1
    config = flowsync("config", env=flowsync_env(None, database_url, None, FLOWSYNC_AUDIT_KEY=key))
    for output in (keyed.stdout, keyed.stderr, plain.stdout, plain.stderr, config.stdout, config.stderr):
        assert key not in output
    assert any(line.split()[:2] == ["audit_key", "set"] for line in config.stdout.splitlines())


def test_a_read_only_role_can_verify(server_database_url: str, scripted: SimulatorHandle) -> None:
    """The reader of docs/roles, which can only SELECT, runs `flowsync verify` to the end: exit 0."""
    with documented_roles(server_database_url) as accounts:
        play_history(scripted, settings_for(scripted, server_database_url, "1-3"), accounts.owner)
        result = flowsync("verify", env=flowsync_env(None, accounts.urls["reader"], None))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "verified:" in result.stdout


def test_error_events_are_outside_the_audit_so_pruning_them_still_verifies(
    played: Engine, scripted: SimulatorHandle, database_url: str
) -> None:
    """Deleting every `error` row (as a prune would) keeps verify passing; a streak shorter than the
    errors kept does not."""
    settings = settings_for(scripted, database_url, "1-3")
    scripted.faults.persist(2, Fault.html())
    for _ in range(2):
        sync(settings, played)
    with played.begin() as connection:
        connection.execute(flows.update().where(flows.c.flow_id == 2).values(consecutive_failures=1))
    found, _ = verify(played)
    assert [(d.table, d.key) for d in found] == [("flows", "flow_id=2")], found
    with played.begin() as connection:
        connection.execute(flows.update().where(flows.c.flow_id == 2).values(consecutive_failures=2))
        connection.execute(flow_history.delete().where(flow_history.c.event == "error"))
    found, _ = verify(played)
    assert found == []
