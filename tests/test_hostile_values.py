"""Hostile values from the API: stored faithfully on every backend, or refused with the old state kept."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.simulator import SimulatorHandle
from sync.store.schema import flow_history, flows
from tests.conftest import settings_for
from tests.tables import served_snapshot, stored_snapshot
from tests.test_sync_run import rows, sync

NODE = {"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 0}


def flow(flow_id: int, name: str = "Plain flow", nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"flowId": flow_id, "name": name, "flow": [NODE] if nodes is None else nodes}


STORED_AS_RECEIVED = [
    pytest.param(flow(1, name="Robert'); DROP TABLE flows;--"), id="sql-metacharacters"),
    pytest.param(flow(1, name="100% _wild_ \\%s :param ?"), id="placeholders-and-wildcards"),
    pytest.param(flow(1, name="tab\there\nnewline\rreturn\x1b[31mred\x7f"), id="control-characters"),
    pytest.param(flow(1, name="🚀 Ünïcødé 验证码 \u200b\u202e"), id="unicode-and-bidi"),
    pytest.param(flow(1, name="n" * 255), id="longest-name"),
    pytest.param(flow(1, name=""), id="empty-name"),
    pytest.param(flow(1, nodes=[]), id="no-nodes"),
    pytest.param(flow(1, nodes=[NODE] * 2000), id="two-thousand-nodes"),
    pytest.param(
        flow(1, nodes=[{"waitingTime": 2**63 - 1, "status": -(2**63), "channel": "fax", "channelCut": -1}]),
        id="extreme-integers",
    ),
    pytest.param(
        flow(1, nodes=[{"waitingTime": "45", "status": "2", "channel": "call", "channelCut": "1"}]),
        id="numeric-strings",
    ),
    pytest.param(flow(1, nodes=[{**NODE, "channel": "ÇÅLL-" + "x" * 27}]), id="longest-channel"),
]


@pytest.mark.parametrize("served", STORED_AS_RECEIVED)
def test_odd_but_valid_values_are_stored_exactly(
    engine: Engine, sim: SimulatorHandle, database_url: str, served: dict[str, Any]
) -> None:
    """Whatever the API sends that validates is stored and read back unchanged, in tables and history."""
    sim.catalog.put(served)
    report = sync(settings_for(sim, database_url, "1"), engine)
    assert report.status == "ok", report.error_message
    assert stored_snapshot(engine, 1) == served_snapshot(sim, 1)
    (event,) = rows(engine, flow_history)
    assert event["snapshot"] == served_snapshot(sim, 1)


REFUSED = [
    pytest.param(flow(1, name="x" * 256), "longer than 255", id="name-too-long"),
    pytest.param(flow(1, name="nul\x00byte"), "NUL", id="nul-character"),
    pytest.param(flow(1, nodes=[NODE] * 10_001), "10000", id="too-many-nodes"),
    pytest.param(flow(1, nodes=[{**NODE, "waitingTime": 2**63}]), "64-bit", id="integer-overflow"),
    pytest.param(flow(1, nodes=[{**NODE, "waitingTime": 30.5}]), "integer", id="fraction"),
    pytest.param(flow(1, nodes=[{**NODE, "status": True}]), "boolean", id="boolean"),
    pytest.param(flow(1, nodes=[{**NODE, "channel": "c" * 33}]), "longer than 32", id="channel-too-long"),
    pytest.param(flow(1, nodes=[{**NODE, "channel": None}]), "string", id="null-channel"),
    pytest.param({"flowId": 1, "name": "no nodes key"}, "flow", id="missing-nodes"),
]


@pytest.mark.parametrize(("served", "reason"), REFUSED)
def test_untrustworthy_values_are_refused_and_the_old_state_kept(
    engine: Engine, sim: SimulatorHandle, database_url: str, served: dict[str, Any], reason: str
) -> None:
    """A value that cannot be stored faithfully is a payload error; the previous configuration stays."""
    settings = settings_for(sim, database_url, "1")
    sync(settings, engine)
    before = stored_snapshot(engine, 1)
    sim.catalog.put(served)
    report = sync(settings, engine)
    assert (report.status, report.counts.failed) == ("partial", 1)
    assert stored_snapshot(engine, 1) == before
    error = rows(engine, flow_history, "id")[-1]
    assert (error["event"], error["error_kind"]) == ("error", "payload")
    assert reason in error["error_message"]
    with engine.connect() as connection:
        assert connection.scalar(sa.select(flows.c.sync_state)) == "error"


def test_duplicate_keys_in_a_body_are_refused(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """JSON with a repeated key is ambiguous, so it is refused rather than guessed at; the old state stays."""
    settings = settings_for(sim, database_url, "1")
    sync(settings, engine)
    before = stored_snapshot(engine, 1)
    body = b'{"status": "0", "data": {"flowId": 1, "name": "first", "name": "second", "flow": []}}'
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    report = sync(settings, engine, transport=transport)
    assert report.counts.failed == 1
    assert stored_snapshot(engine, 1) == before
    error = rows(engine, flow_history, "id")[-1]
    assert (error["error_kind"], error["error_message"]) == (
        "payload",
        "duplicate key 'name' in a JSON object",
    )


def test_listed_items_whose_flow_id_breaks_the_rule_fail_alone_and_are_never_stored(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """In `all` mode, flowId 0, -5 or 2**63 is a payload error of that item; the other flows are stored."""
    listing = {"status": "0", "data": [flow(1), flow(0), flow(-5), flow(2**63), flow(2)]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=listing))
    report = sync(settings_for(sim, database_url, "all"), engine, transport=transport)
    counts = report.counts
    assert (report.status, counts.requested, counts.created, counts.failed) == ("partial", 5, 2, 3)
    with engine.connect() as connection:
        assert list(connection.scalars(sa.select(flows.c.flow_id).order_by(flows.c.flow_id))) == [1, 2]
    errors = [event for event in rows(engine, flow_history, "id") if event["event"] == "error"]
    assert [(e["flow_id"], e["error_kind"]) for e in errors] == [(None, "payload")] * 3
    assert [e["error_message"].split(":")[0] for e in errors] == ["item 1", "item 2", "item 3"]
    assert all("is not a flow ID" in e["error_message"] for e in errors)
