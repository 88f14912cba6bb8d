"""The canonical form of a flow's configuration, and its content hash.

A snapshot is what `flow_history.snapshot` stores and what `flows.content_hash`
summarises: `{"flow_id", "name", "nodes": [{"position", "waiting_time", "status",
"channel", "channel_cut"}]}` with 1-based positions. Two payloads that differ only
in key order, unknown fields or numeric-string forms have the same snapshot and
so the same hash. Pure functions only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from json.encoder import encode_basestring
from typing import Any

# How json.dumps(..., ensure_ascii=False) writes a string, quotes included.
_json_string = encode_basestring

NODE_FIELDS = ("waiting_time", "status", "channel", "channel_cut")


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node; `waiting_time` is in seconds, as the API gives it."""

    position: int
    waiting_time: int
    status: int
    channel: str
    channel_cut: int

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "waiting_time": self.waiting_time,
            "status": self.status,
            "channel": self.channel,
            "channel_cut": self.channel_cut,
        }


@dataclass(frozen=True)
class FlowSnapshot:
    """A flow's whole configuration at one moment."""

    flow_id: int
    name: str
    nodes: tuple[NodeSnapshot, ...]

    def as_json(self) -> dict[str, Any]:
        return {"flow_id": self.flow_id, "name": self.name, "nodes": [n.as_json() for n in self.nodes]}

    @cached_property
    def content_hash(self) -> str:
        """Computed once per snapshot: a run compares and stores it several times."""
        return content_hash(self)


def from_json(document: dict[str, Any]) -> FlowSnapshot:
    """Read back a snapshot stored by `as_json` (for example from `flow_history`)."""
    return FlowSnapshot(
        flow_id=int(document["flow_id"]),
        name=str(document["name"]),
        nodes=tuple(NodeSnapshot(**node) for node in document["nodes"]),
    )


def canonical_json(snapshot: FlowSnapshot) -> str:
    """The exact text that is hashed: sorted keys, no spaces, unicode kept as is.

    That is `json.dumps(snapshot.as_json(), sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` (a property test holds the two equal), written out field by field
    because every fetched flow is hashed and this is seven times faster.
    """
    nodes = ",".join(
        f'{{"channel":{_json_string(n.channel)},"channel_cut":{n.channel_cut:d},"position":{n.position:d},'
        f'"status":{n.status:d},"waiting_time":{n.waiting_time:d}}}'
        for n in snapshot.nodes
    )
    return f'{{"flow_id":{snapshot.flow_id:d},"name":{_json_string(snapshot.name)},"nodes":[{nodes}]}}'


def content_hash(snapshot: FlowSnapshot) -> str:
    """SHA-256 hex of the canonical JSON; equal hashes mean equal configurations."""
    return hashlib.sha256(canonical_json(snapshot).encode("utf-8")).hexdigest()
