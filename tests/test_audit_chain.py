"""The audit chain (schema 0003): its encoding, byte for byte, and the hashes the writer and migration store.

`auditor_chain_hash` is written from docs/audit.md alone, with hashlib, hmac and json, the
way an auditor would; it never imports flowsync. The pinned bytes and hashes make any
change to the encoding fail here first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.core.chain import ChainedEvent, ChainHasher, encode
from sync.simulator import SimulatorConfig, SimulatorHandle, running_simulator
from sync.store import migrate
from sync.store.schema import flow_history, sync_runs
from tests.conftest import settings_for
from tests.test_analyst_layer import FLOW_1, FLOW_2, FLOW_3, play_history


@pytest.fixture
def scripted() -> Iterator[SimulatorHandle]:
    """The simulator with the analyst layer's three flows, for `play_history`."""
    with running_simulator(SimulatorConfig(flow_count=0)) as handle:
        for flow in (FLOW_1, FLOW_2, FLOW_3):
            handle.catalog.put(flow)
        yield handle


# What docs/audit.md says, as an auditor would write it (20 lines, no flowsync code).
CHAINED = ("created", "changed", "deleted", "restored")


def auditor_chain_hash(previous: str | None, row: dict[str, Any], key: bytes | None = None) -> str:
    when = row["occurred_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    document = {
        "changes": row["changes"],
        "content_hash": row["content_hash"],
        "event": row["event"],
        "flow_id": row["flow_id"],
        "id": row["id"],
        "occurred_at": when,
        "previous": previous,
        "run_id": row["run_id"],
        "snapshot": row["snapshot"],
    }
    data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def auditor_rows(engine: Engine) -> list[dict[str, Any]]:
    """`flow_history` in id order, read with plain SQL and decoded as any driver returns it."""
    with engine.connect() as connection:
        result = connection.exec_driver_sql(
            "SELECT id, run_id, flow_id, occurred_at, event, changes, snapshot, content_hash, chain_hash "
            "FROM flow_history ORDER BY id"
        )
        rows = [dict(row._mapping) for row in result]
    for row in rows:
        for column in ("changes", "snapshot"):
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
        when = row["occurred_at"]
        when = datetime.fromisoformat(when) if isinstance(when, str) else when
        row["occurred_at"] = when if when.tzinfo else when.replace(tzinfo=UTC)
    return rows


NAME = 'Login "OTP" é☃🔑\t/'
NODE_2 = {"position": 2, "waiting_time": 60, "status": 2, "channel": "call", "channel_cut": 1}
FIXED: dict[str, Any] = {
    "id": 42,
    "run_id": 7,
    "flow_id": 12,
    "occurred_at": datetime(2026, 11, 29, 10, 5, 0, 120000, tzinfo=UTC),
    "event": "changed",
    "changes": [
        {"field": "name", "old": "Login OTP", "new": NAME},
        {"field": "nodes[2]", "old": None, "new": NODE_2},
    ],
    "snapshot": {
        "flow_id": 12,
        "name": NAME,
        "nodes": [
            {"position": 1, "waiting_time": 30, "status": 1, "channel": "sms", "channel_cut": 0},
            NODE_2,
        ],
    },
    "content_hash": "ab" * 32,
}
PREVIOUS = "9f" * 32
FIXED_BYTES = (
    b'{"changes":[{"field":"name","new":"Login \\"OTP\\" \\u00e9\\u2603\\ud83d\\udd11\\t/",'
    b'"old":"Login OTP"},'
    b'{"field":"nodes[2]","new":{"channel":"call","channel_cut":1,"position":2,"status":2,"waiting_time":60},'
    b'"old":null}],"content_hash":"abababababababababababababababababababababababababababababababab",'
    b'"event":"changed","flow_id":12,"id":42,"occurred_at":"2026-11-29T10:05:00.120000Z",'
    b'"previous":"9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f","run_id":7,'
    b'"snapshot":{"flow_id":12,"name":"Login \\"OTP\\" \\u00e9\\u2603\\ud83d\\udd11\\t/","nodes":['
    b'{"channel":"sms","channel_cut":0,"position":1,"status":1,"waiting_time":30},'
    b'{"channel":"call","channel_cut":1,"position":2,"status":2,"waiting_time":60}]}}'
)


def test_the_encoding_is_pinned_byte_for_byte() -> None:
    """A fixed event encodes to exactly these bytes and hashes; flowsync and the auditor's copy agree."""
    event = ChainedEvent(**FIXED)
    assert encode(PREVIOUS, event) == FIXED_BYTES
    sha = "62c1dcc40a77de0dc201e93d158fcb1619cdc4bc88d38666d1c6cee187c75e4e"
    keyed = "25d19309ce2299770dd6df6abfabef889cfb72932b83eeff479867ad7437c5ce"
    first = "cdadf0c2639c47cbb86a406325010f8c7cab7dbf0a8e981ce991ad79ec1273e3"
    assert hashlib.sha256(FIXED_BYTES).hexdigest() == sha
    assert auditor_chain_hash(PREVIOUS, FIXED) == ChainHasher().link(PREVIOUS, event) == sha
    assert auditor_chain_hash(PREVIOUS, FIXED, b"audit-key") == ChainHasher.keyed("audit-key").link(
        PREVIOUS, event
    )
    assert ChainHasher.keyed("audit-key").link(PREVIOUS, event) == keyed
    assert auditor_chain_hash(None, FIXED) == ChainHasher().link(None, event) == first


def test_the_key_never_shows() -> None:
    """The hasher's repr leaves the key out; its kind says which chain it makes."""
    hasher = ChainHasher.keyed("s3cret-audit-key")
    assert "s3cret" not in repr(hasher)
    assert (hasher.kind, ChainHasher().kind) == ("hmac-sha256", "sha256")


@pytest.mark.parametrize("key", [None, "an audit key"], ids=["sha256", "hmac"])
def test_an_auditor_recomputes_what_the_writer_stored(
    engine: Engine,
    scripted: SimulatorHandle,
    database_url: str,
    key: str | None,
) -> None:
    """Every configuration event's chain_hash, and every run's history_head, follow from the rows alone."""
    settings = settings_for(scripted, database_url, "1-3", audit_key=key)
    play_history(scripted, settings, engine)
    previous: str | None = None
    chained = 0
    for row in auditor_rows(engine):
        if row["event"] not in CHAINED:
            assert row["chain_hash"] is None
            continue
        previous = auditor_chain_hash(previous, row, key.encode() if key else None)
        assert row["chain_hash"] == previous, f"flow_history row {row['id']}"
        chained += 1
    assert chained >= 8
    with engine.connect() as connection:
        heads = list(connection.scalars(sa.select(sync_runs.c.history_head).order_by(sync_runs.c.id)))
    assert heads[-1] == previous, "the latest run ended at the chain's head"
    assert None not in heads


def chain_columns(engine: Engine) -> tuple[list[tuple[int, str | None]], list[tuple[int, str | None]]]:
    with engine.connect() as connection:
        hashes = [
            tuple(r) for r in connection.execute(sa.select(flow_history.c.id, flow_history.c.chain_hash))
        ]
        heads = [tuple(r) for r in connection.execute(sa.select(sync_runs.c.id, sync_runs.c.history_head))]
    return sorted(hashes), sorted(heads)


@pytest.mark.parametrize("key", [None, "an audit key"], ids=["sha256", "hmac"])
def test_migration_0003_chains_an_older_history_as_the_writer_would(
    engine: Engine,
    scripted: SimulatorHandle,
    database_url: str,
    key: str | None,
) -> None:
    """A history written under schema 0002, upgraded, holds exactly the hashes and heads the writer wrote."""
    settings = settings_for(scripted, database_url, "1-3", audit_key=key)
    play_history(scripted, settings, engine)
    written = chain_columns(engine)
    assert sum(1 for _, h in written[0] if h is not None) >= 8
    migrate.downgrade(engine, "0002")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("flow_history")}
    assert "chain_hash" not in columns
    migrate.upgrade(engine, chain=settings.chain)
    assert chain_columns(engine) == written


def test_migration_0003_reads_the_history_a_slice_at_a_time(
    engine: Engine,
    scripted: SimulatorHandle,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With slices and flushes of two rows, the migration still chains the whole history exactly."""
    play_history(scripted, settings_for(scripted, database_url, "1-3"), engine)
    written = chain_columns(engine)
    migrate.downgrade(engine, "0002")
    module = migrate.script_directory().get_revision("0003").module
    monkeypatch.setattr(module, "SLICE_ROWS", 2)
    monkeypatch.setattr(module, "FLUSH_ROWS", 2)
    migrate.upgrade(engine)
    assert chain_columns(engine) == written


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_script_in_docs_audit_md_recomputes_the_head(
    engine: Engine, scripted: SimulatorHandle, database_url: str, tmp_path: Path
) -> None:
    """The 20-line script of docs/audit.md, run as printed against a real database, ends at the head."""
    play_history(scripted, settings_for(scripted, database_url, "1-3"), engine)
    text = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    script = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in script.splitlines() if line.strip()]) <= 22
    (tmp_path / "auditor.py").write_text(script)
    result = subprocess.run(
        [sys.executable, "auditor.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    with engine.connect() as connection:
        head = connection.scalar(sa.select(sync_runs.c.history_head).order_by(sync_runs.c.id.desc()).limit(1))
    assert result.stdout.splitlines() == [f"head {head}"]
