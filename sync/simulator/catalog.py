"""The simulated account's flows, kept exactly in the vendor API's JSON shape.

A `FlowCatalog` is deterministic from a seed and evolves between sync rounds
(edits, deletions, restorations, new flows) so the demo, tests and benchmarks
can check what the sync made of each change. The server reads it from its own
thread while a test or the demo edits it, hence the lock; stored flows are
replaced rather than edited in place, and callers always get copies.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Flow = dict[str, Any]
"""As the API sends it: `{"flowId": 1, "name": "Login OTP 1",
"flow": [{"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 0}]}`"""

NAME_STEMS = ("Login OTP", "Signup OTP", "Password reset", "Payment confirm", "Device check", "Withdrawal")
CHANNELS = ("sms", "call")
MAX_NODES = 4


@dataclass(frozen=True)
class Evolution:
    """What one `FlowCatalog.evolve` round did, by flow ID."""

    changed: list[int]
    deleted: list[int]
    restored: list[int]


def random_node(rng: random.Random) -> dict[str, Any]:
    """One valid node: `waitingTime` in seconds (30-120), trigger `status`, `channel`, `channelCut`."""
    return {
        "waitingTime": rng.randint(30, 120),
        "status": rng.choice((1, 2)),
        "channel": rng.choice(CHANNELS),
        "channelCut": rng.choice((0, 1)),
    }


def random_flow(flow_id: int, rng: random.Random) -> Flow:
    """A valid flow; the ID in the name keeps names unique within the account."""
    return {
        "flowId": flow_id,
        "name": f"{rng.choice(NAME_STEMS)} {flow_id}",
        "flow": [random_node(rng) for _ in range(rng.randint(1, MAX_NODES))],
    }


def _copy(flow: Flow) -> Flow:
    # Cheaper than deepcopy on the server's hot path; `put` may store odd shapes, so copy only what is there.
    nodes = flow.get("flow")
    if isinstance(nodes, list):
        return {**flow, "flow": [dict(node) if isinstance(node, dict) else node for node in nodes]}
    return dict(flow)


def _changed(flow: Flow, rng: random.Random) -> Flow:
    """A copy of a generated flow with one visible change: its name, a node field, a node added or removed."""
    new = _copy(flow)
    nodes: list[dict[str, Any]] = new["flow"]
    choices = [
        "name",
        "field",
        *(["add"] if len(nodes) < MAX_NODES else []),
        *(["remove"] if len(nodes) > 1 else []),
    ]
    match rng.choice(choices):
        case "name":
            stem = rng.choice([s for s in NAME_STEMS if not new["name"].startswith(s + " ")])
            new["name"] = f"{stem} {new['flowId']}"
        case "add":
            nodes.insert(rng.randint(0, len(nodes)), random_node(rng))
        case "remove":
            del nodes[rng.randrange(len(nodes))]
        case _:
            node = rng.choice(nodes)
            field = rng.choice(("waitingTime", "status", "channel", "channelCut"))
            alternatives = {
                "waitingTime": [t for t in (30, 45, 60, 90, 120) if t != node["waitingTime"]],
                "status": [3 - node["status"]],
                "channel": [c for c in CHANNELS if c != node["channel"]],
                "channelCut": [1 - node["channelCut"]],
            }[field]
            node[field] = rng.choice(alternatives)
    return new


def _share(ids: list[int], fraction: float, rng: random.Random) -> list[int]:
    """A random `fraction` of `ids` (at least one when the fraction is positive), sorted."""
    if fraction <= 0 or not ids:
        return []
    count = min(len(ids), max(1, round(fraction * len(ids))))
    return sorted(rng.sample(ids, count))


class FlowCatalog:
    """The flows the simulated account has now, plus the deleted ones so they can come back unchanged."""

    def __init__(self, flows: Iterable[Flow] = ()) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, Flow] = {flow["flowId"]: _copy(flow) for flow in flows}
        self._deleted: dict[int, Flow] = {}

    @classmethod
    def generate(cls, count: int, seed: int = 0) -> FlowCatalog:
        """Flows with IDs 1..count, the same for the same seed."""
        rng = random.Random(seed)
        return cls(random_flow(flow_id, rng) for flow_id in range(1, count + 1))

    def get(self, flow_id: int) -> Flow | None:
        """A copy of the live flow, or None when it does not exist (or was deleted)."""
        with self._lock:
            flow = self._live.get(flow_id)
            return None if flow is None else _copy(flow)

    def stored(self, flow_id: int) -> Flow | None:
        """The live flow itself, not a copy, for the server's hot path: the caller must not change it.

        Stored flows are replaced, never edited in place, so the same object means the same content.
        """
        with self._lock:
            return self._live.get(flow_id)

    def listing(self) -> list[Flow]:
        """Copies of every live flow, by ID, as `/flow/list` returns them."""
        with self._lock:
            return [_copy(self._live[flow_id]) for flow_id in sorted(self._live)]

    def ids(self) -> list[int]:
        """IDs of the live flows, ascending."""
        with self._lock:
            return sorted(self._live)

    def deleted_ids(self) -> list[int]:
        """IDs of deleted flows that `restore` can bring back."""
        with self._lock:
            return sorted(self._deleted)

    def put(self, flow: Flow) -> None:
        """Create or replace a flow as given, unchecked, so tests can serve odd payloads."""
        with self._lock:
            self._deleted.pop(flow["flowId"], None)
            self._live[flow["flowId"]] = _copy(flow)

    def add(self, count: int, rng: random.Random) -> list[int]:
        """Create `count` new flows with IDs never used before; return their IDs."""
        with self._lock:
            first = max([*self._live, *self._deleted], default=0) + 1
            new_ids = list(range(first, first + count))
            for flow_id in new_ids:
                self._live[flow_id] = random_flow(flow_id, rng)
            return new_ids

    def mutate(self, fraction: float, rng: random.Random) -> list[int]:
        """Make one visible change to each of a random share of the live flows; return their IDs."""
        with self._lock:
            return self._mutate(_share(sorted(self._live), fraction, rng), rng)

    def delete(self, ids: Iterable[int]) -> list[int]:
        """Delete the live flows among `ids`; return those deleted."""
        with self._lock:
            gone = [flow_id for flow_id in ids if flow_id in self._live]
            for flow_id in gone:
                self._deleted[flow_id] = self._live.pop(flow_id)
            return gone

    def restore(self, ids: Iterable[int]) -> list[int]:
        """Bring deleted flows among `ids` back as they were; return those restored."""
        with self._lock:
            back = [flow_id for flow_id in ids if flow_id in self._deleted]
            for flow_id in back:
                self._live[flow_id] = self._deleted.pop(flow_id)
            return back

    def evolve(
        self, rng: random.Random, *, change: float = 0.1, delete: float = 0.0, restore: float = 0.0
    ) -> Evolution:
        """One round between syncs: restore a share of deleted flows, delete a share, change some others."""
        with self._lock:
            to_restore = _share(sorted(self._deleted), restore, rng)
            to_delete = _share(sorted(self._live), delete, rng)
            for flow_id in to_delete:
                self._deleted[flow_id] = self._live.pop(flow_id)
            for flow_id in to_restore:
                self._live[flow_id] = self._deleted.pop(flow_id)
            # Restored flows come back unchanged, so the sync must see a restore and not a change.
            candidates = sorted(set(self._live) - set(to_restore))
            changed = self._mutate(_share(candidates, change, rng), rng)
            return Evolution(changed=changed, deleted=to_delete, restored=to_restore)

    def _mutate(self, ids: list[int], rng: random.Random) -> list[int]:
        for flow_id in ids:
            self._live[flow_id] = _changed(self._live[flow_id], rng)
        return ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)
