"""Reading flowsync's tables back in the contract's snapshot form, for comparisons in tests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sync.simulator import SimulatorHandle
from sync.store.schema import flow_nodes, flows
from sync.vendor.payload import normalize, parse_flow


def stored_snapshots(connection: sa.Connection) -> dict[int, dict[str, Any]]:
    """Every stored flow's configuration, by flow ID, as `{"flow_id", "name", "nodes": [...]}`."""
    snapshots = {
        row.flow_id: {"flow_id": row.flow_id, "name": row.name, "nodes": []}
        for row in connection.execute(sa.select(flows.c.flow_id, flows.c.name))
    }
    for node in connection.execute(
        sa.select(flow_nodes).order_by(flow_nodes.c.flow_id, flow_nodes.c.position)
    ):
        fields = dict(node._mapping)
        snapshots[fields.pop("flow_id")]["nodes"].append(fields)
    return snapshots


def stored_snapshot(engine: sa.Engine, flow_id: int) -> dict[str, Any]:
    """One flow's stored configuration (name None and no nodes when it is not stored)."""
    with engine.connect() as connection:
        return stored_snapshots(connection).get(flow_id, {"flow_id": flow_id, "name": None, "nodes": []})


def served_snapshot(sim: SimulatorHandle, flow_id: int) -> dict[str, Any]:
    """What the simulator serves for a flow now, in the same form."""
    flow = sim.catalog.get(flow_id)
    assert flow is not None, f"the simulator has no flow {flow_id}"
    return normalize(parse_flow(flow)).as_json()


def assert_every_flow_whole(engine: sa.Engine, sim: SimulatorHandle) -> None:
    """Each stored flow equals what the simulator serves for it, node count included: none is half-written."""
    with engine.connect() as connection:
        counts = dict(connection.execute(sa.select(flows.c.flow_id, flows.c.node_count)).all())
        for flow_id, stored in stored_snapshots(connection).items():
            assert stored == served_snapshot(sim, flow_id)
            assert counts[flow_id] == len(stored["nodes"])
