"""What counts as a change: the field-by-field difference of two snapshots.

Nodes are compared by position (1-based), because the vendor's flows are ordered
escalation plans: inserting a node at the front shifts every later step, and that
is what an auditor should see. Field names follow `flow_history.changes`:
`name`, `nodes[P].<column>`, or `nodes[P]` for a whole node added (old null) or
removed (new null). Pure functions only.
"""

from __future__ import annotations

from typing import Any, TypedDict

from sync.core.snapshot import NODE_FIELDS, FlowSnapshot, NodeSnapshot


class Change(TypedDict):
    field: str
    old: Any
    new: Any


def diff(old: FlowSnapshot, new: FlowSnapshot) -> list[Change]:
    """Every difference from `old` to `new`; empty when the configurations are equal."""
    changes: list[Change] = []
    if old.name != new.name:
        changes.append({"field": "name", "old": old.name, "new": new.name})
    for index in range(max(len(old.nodes), len(new.nodes))):
        position = index + 1
        before = old.nodes[index] if index < len(old.nodes) else None
        after = new.nodes[index] if index < len(new.nodes) else None
        if before is None or after is None:
            changes.append(
                {
                    "field": f"nodes[{position}]",
                    "old": _node_fields(before),
                    "new": _node_fields(after),
                }
            )
            continue
        for field in NODE_FIELDS:
            was, now = getattr(before, field), getattr(after, field)
            if was != now:
                changes.append({"field": f"nodes[{position}].{field}", "old": was, "new": now})
    return changes


def apply_changes(old: FlowSnapshot, changes: list[Change]) -> FlowSnapshot:
    """Replay `changes` onto `old`: `apply_changes(a, diff(a, b)) == b` for any snapshots."""
    name = old.name
    nodes: dict[int, dict[str, Any]] = {n.position: _node_fields(n) or {} for n in old.nodes}
    for change in changes:
        field = change["field"]
        if field == "name":
            name = change["new"]
            continue
        position_text, _, column = field.removeprefix("nodes[").partition("]")
        position = int(position_text)
        if not column:
            if change["new"] is None:
                nodes.pop(position, None)
            else:
                nodes[position] = dict(change["new"])
        else:
            nodes[position][column.removeprefix(".")] = change["new"]
    return FlowSnapshot(
        flow_id=old.flow_id,
        name=name,
        nodes=tuple(NodeSnapshot(position=p, **nodes[p]) for p in sorted(nodes)),
    )


def _node_fields(node: NodeSnapshot | None) -> dict[str, Any] | None:
    """A whole node as stored in `changes`: its columns, without the position it sits at."""
    if node is None:
        return None
    return {field: getattr(node, field) for field in NODE_FIELDS}
