"""Snapshots, their content hash, and what counts as a change: examples and properties.

The properties say what the rest of flowsync relies on: any body either becomes a
snapshot or is refused with ValueError; equal configurations hash equal and diff to
nothing; and the stored `changes` replay one snapshot into the next.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.core.diff import Change, apply_changes, diff
from sync.core.snapshot import (
    NODE_FIELDS,
    FlowSnapshot,
    NodeSnapshot,
    canonical_json,
    content_hash,
    from_json,
)
from sync.vendor.payload import normalize, parse_flow

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

# Generation time varies with machine load; the example count, not a deadline, bounds the run time.
PROPERTY = settings(deadline=None)

# --- strategies ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def loosely(value: int, form: int) -> object:
    """An integer in one of the forms the API may send: number, numeric string, padded string, float."""
    if form == 3 and abs(value) <= 2**53:
        return float(value)
    return (value, str(value), f" {value} ", value)[form]


int_forms = st.integers(min_value=0, max_value=3)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten, else `bad`: many drawn flows are valid, and many are nearly so."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda n: bad if n == 0 else good)


def without(document: dict[str, Any], key: str | None) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


bad_ints = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["1.0", "1e3", "0x1f", "9" * 25]),
)
sloppy_ints = mostly(st.builds(loosely, INT64, int_forms), bad_ints)
sloppy_texts = mostly(
    st.text(max_size=40),
    st.one_of(
        st.text(min_size=250, max_size=300), st.sampled_from(["a\x00b", "c" * 33]), st.integers(), st.none()
    ),
)
extra_keys = st.dictionaries(st.sampled_from(["note", "id", "extra", "flowName"]), json_values, max_size=2)
scalar_extras = st.dictionaries(st.sampled_from(["note", "id"]), json_scalars, max_size=2)
dropped_key = mostly(st.none(), st.sampled_from(["flowId", "name", "flow", "waitingTime", "channelCut"]))
near_valid_nodes = st.builds(
    lambda fixed, extra, drop: without({**extra, **fixed}, drop),
    st.fixed_dictionaries(
        {
            "waitingTime": sloppy_ints,
            "status": sloppy_ints,
            "channel": sloppy_texts,
            "channelCut": sloppy_ints,
        }
    ),
    extra_keys,
    dropped_key,
)
near_valid_flows = st.builds(
    lambda fixed, extra, drop: without({**extra, **fixed}, drop),
    st.fixed_dictionaries(
        {
            "flowId": sloppy_ints,
            "name": sloppy_texts,
            "flow": mostly(st.lists(mostly(near_valid_nodes, json_values), max_size=4), json_values),
        }
    ),
    extra_keys,
    dropped_key,
)

# Text a database can store: UTF-8 encodable, without NUL (which parse_flow refuses, as PostgreSQL does).
storable_text = st.characters(codec="utf-8", exclude_characters="\x00")

# Valid snapshots draw from small pools so that equal nodes and names are common.
node_values = st.tuples(
    st.sampled_from([30, 60, 90, 120]) | INT64,
    st.sampled_from([1, 2]) | INT64,
    st.sampled_from(["sms", "call"]) | st.text(storable_text, max_size=32),
    st.sampled_from([0, 1]) | INT64,
)
names = st.sampled_from(["Login OTP", "Signup", "登录"]) | st.text(storable_text, max_size=40)


def snapshot(flow_id: int, name: str, nodes: list[tuple[int, int, str, int]]) -> FlowSnapshot:
    """A snapshot as `normalize` builds it: nodes numbered from 1 in order."""
    return FlowSnapshot(
        flow_id=flow_id,
        name=name,
        nodes=tuple(NodeSnapshot(position, *values) for position, values in enumerate(nodes, start=1)),
    )


def snapshots(flow_ids: st.SearchStrategy[int] = INT64) -> st.SearchStrategy[FlowSnapshot]:
    return st.builds(snapshot, flow_ids, names, st.lists(node_values, max_size=6))


same_flow_pairs = INT64.flatmap(
    lambda flow_id: st.tuples(snapshots(st.just(flow_id)), snapshots(st.just(flow_id)))
)


def payload_of(snap: FlowSnapshot) -> dict[str, Any]:
    """The API's JSON for a snapshot, in the documented shape."""
    return {
        "flowId": snap.flow_id,
        "name": snap.name,
        "flow": [
            {
                "waitingTime": n.waiting_time,
                "status": n.status,
                "channel": n.channel,
                "channelCut": n.channel_cut,
            }
            for n in snap.nodes
        ],
    }


@st.composite
def sloppy_payloads_of(draw: st.DrawFn, snap: FlowSnapshot) -> dict[str, Any]:
    """The same configuration as the API might send it: any key order, numbers in any form, extra keys."""

    def rewrite(document: dict[str, Any]) -> dict[str, Any]:
        items = [
            (key, loosely(value, draw(int_forms)) if isinstance(value, int) and key != "channel" else value)
            for key, value in document.items()
        ]
        items += list(draw(scalar_extras).items())
        if document.get("channelCut") == 0 and draw(st.booleans()):
            items = [(key, value) for key, value in items if key != "channelCut"]  # 0 is the default
        return dict(draw(st.permutations(items)))

    document = payload_of(snap)
    document["flow"] = [rewrite(node) for node in document["flow"]]
    return rewrite(document)


@st.composite
def changed_copies(draw: st.DrawFn, snap: FlowSnapshot) -> FlowSnapshot:
    """`snap` with exactly one thing different: the ID, the name, one node field, or the node count."""
    choices = ["flow_id", "name", "add"] + (["remove", "node"] if snap.nodes else [])
    choice = draw(st.sampled_from(choices))
    document = snap.as_json()
    if choice in ("flow_id", "name"):
        strategy = INT64 if choice == "flow_id" else names
        document[choice] = draw(strategy.filter(lambda value: value != document[choice]))
    elif choice == "add":
        waiting_time, status, channel, channel_cut = draw(node_values)
        position = len(document["nodes"]) + 1
        document["nodes"].append(
            {
                "position": position,
                "waiting_time": waiting_time,
                "status": status,
                "channel": channel,
                "channel_cut": channel_cut,
            }
        )
    elif choice == "remove":
        document["nodes"].pop()
    else:
        node = draw(st.sampled_from(document["nodes"]))
        field = draw(st.sampled_from(NODE_FIELDS))
        strategy = st.text(storable_text, max_size=32) if field == "channel" else INT64
        node[field] = draw(strategy.filter(lambda value: value != node[field]))
    return from_json(document)


# --- properties ---------------------------------------------------------------------------------


@settings(PROPERTY, max_examples=200)
@given(json_values | near_valid_flows)
def test_any_json_value_becomes_a_snapshot_or_a_value_error(data: object) -> None:
    """Whatever the API sends, parsing yields a hashable snapshot or raises ValueError, nothing else."""
    try:
        flow = parse_flow(data)
    except ValueError:
        return
    snap = normalize(flow)
    assert len(content_hash(snap)) == 64
    assert [node.position for node in snap.nodes] == list(range(1, len(snap.nodes) + 1))


def test_a_lone_surrogate_is_refused_before_it_reaches_the_hash() -> None:
    """A `\\ud800` escape in a name is valid JSON; it must be refused as ValueError, not crash the hash."""
    data = json.loads('{"flowId": 1, "name": "\\ud800", "flow": []}')
    try:
        flow = parse_flow(data)
    except ValueError:
        return
    content_hash(normalize(flow))


@PROPERTY
@given(snapshots())
def test_a_snapshot_does_not_differ_from_itself(snap: FlowSnapshot) -> None:
    """`diff(s, s)` is empty, and so is the diff against an equal copy read back from JSON."""
    assert diff(snap, snap) == []
    assert diff(snap, from_json(json.loads(json.dumps(snap.as_json())))) == []


@PROPERTY
@given(same_flow_pairs)
def test_replaying_the_changes_gives_the_new_snapshot(pair: tuple[FlowSnapshot, FlowSnapshot]) -> None:
    """`apply_changes(a, diff(a, b)) == b`, also after the changes went through a JSON column."""
    old, new = pair
    changes = diff(old, new)
    assert apply_changes(old, changes) == new
    stored: list[Change] = json.loads(json.dumps(changes))
    assert apply_changes(old, stored) == new
    assert (changes == []) == (old == new)


@PROPERTY
@given(snapshots())
def test_a_snapshot_survives_its_json_form(snap: FlowSnapshot) -> None:
    """`from_json(as_json(s)) == s` with the same hash: history rows can be read back."""
    again = from_json(json.loads(json.dumps(snap.as_json())))
    assert again == snap
    assert again.content_hash == snap.content_hash


@PROPERTY
@given(st.data(), snapshots())
def test_the_hash_ignores_key_order_number_forms_and_extra_keys(
    data: st.DataObject, snap: FlowSnapshot
) -> None:
    """Two bodies with the same configuration, written differently, have one content hash."""
    expected = content_hash(normalize(parse_flow(payload_of(snap))))
    sloppy = data.draw(sloppy_payloads_of(snap))
    assert content_hash(normalize(parse_flow(sloppy))) == expected


@PROPERTY
@given(st.data(), snapshots())
def test_the_hash_changes_when_anything_changes(data: st.DataObject, snap: FlowSnapshot) -> None:
    """Changing the ID, the name, any node field, or the number of nodes changes the hash."""
    other = data.draw(changed_copies(snap))
    assert other != snap
    assert content_hash(other) != content_hash(snap)


# --- examples -----------------------------------------------------------------------------------

SMS = (30, 1, "sms", 0)
CALL = (30, 2, "call", 1)
LATE_CALL = (120, 2, "call", 1)
BASE = snapshot(12, "Login OTP", [SMS, CALL])


def columns(waiting_time: int, status: int, channel: str, channel_cut: int) -> dict[str, Any]:
    """A whole node as `changes` holds it: its four columns, without the position."""
    return {"waiting_time": waiting_time, "status": status, "channel": channel, "channel_cut": channel_cut}


@pytest.mark.parametrize(
    ("new", "changes"),
    [
        pytest.param(BASE, [], id="unchanged"),
        pytest.param(
            snapshot(12, "Login OTP v2", [SMS, CALL]), [("name", "Login OTP", "Login OTP v2")], id="name"
        ),
        pytest.param(
            snapshot(12, "Login OTP", [SMS, (60, 2, "call", 1)]),
            [("nodes[2].waiting_time", 30, 60)],
            id="waiting-time",
        ),
        pytest.param(
            snapshot(12, "Renamed", [SMS, (90, 1, "sms", 0)]),
            [
                ("name", "Login OTP", "Renamed"),
                ("nodes[2].waiting_time", 30, 90),
                ("nodes[2].status", 2, 1),
                ("nodes[2].channel", "call", "sms"),
                ("nodes[2].channel_cut", 1, 0),
            ],
            id="several-fields-in-column-order",
        ),
        pytest.param(
            snapshot(12, "Login OTP", [SMS, CALL, LATE_CALL]),
            [("nodes[3]", None, columns(*LATE_CALL))],
            id="node-added-at-the-end",
        ),
        pytest.param(
            snapshot(12, "Login OTP", [SMS]),
            [("nodes[2]", columns(*CALL), None)],
            id="last-node-removed",
        ),
        pytest.param(
            snapshot(12, "Login OTP", []),
            [("nodes[1]", columns(*SMS), None), ("nodes[2]", columns(*CALL), None)],
            id="all-nodes-removed",
        ),
        pytest.param(
            snapshot(12, "Login OTP", [LATE_CALL, SMS, CALL]),
            [
                ("nodes[1].waiting_time", 30, 120),
                ("nodes[1].status", 1, 2),
                ("nodes[1].channel", "sms", "call"),
                ("nodes[1].channel_cut", 0, 1),
                ("nodes[2].status", 2, 1),
                ("nodes[2].channel", "call", "sms"),
                ("nodes[2].channel_cut", 1, 0),
                ("nodes[3]", None, columns(*CALL)),
            ],
            id="inserted-at-the-front-shifts-by-position",
        ),
        pytest.param(
            snapshot(12, "Login OTP", [CALL]),
            [
                ("nodes[1].status", 1, 2),
                ("nodes[1].channel", "sms", "call"),
                ("nodes[1].channel_cut", 0, 1),
                ("nodes[2]", columns(*CALL), None),
            ],
            id="first-node-removed-shifts-by-position",
        ),
    ],
)
def test_diff_lists_each_change_by_field(new: FlowSnapshot, changes: list[tuple[str, Any, Any]]) -> None:
    """Changes name `name`, `nodes[P].<column>` or a whole `nodes[P]`, compared position by position."""
    expected = [{"field": field, "old": old, "new": value} for field, old, value in changes]
    assert diff(BASE, new) == expected
    assert apply_changes(BASE, diff(BASE, new)) == new


def test_canonical_json_is_fixed() -> None:
    """The hashed text has sorted keys and no spaces, so stored hashes stay comparable across versions."""
    snap = snapshot(12, "Login ✓", [SMS])
    text = (
        '{"flow_id":12,"name":"Login ✓","nodes":'
        '[{"channel":"sms","channel_cut":0,"position":1,"status":1,"waiting_time":30}]}'
    )
    assert canonical_json(snap) == text
    assert content_hash(snap) == hashlib.sha256(text.encode()).hexdigest()
    assert snap.content_hash == content_hash(snap)


def test_normalize_numbers_nodes_from_one_in_the_order_received() -> None:
    """The snapshot keeps the API's node order and numbers positions 1, 2, 3."""
    payload = {
        "flowId": "12",
        "name": "Login OTP",
        "flow": [
            {"waitingTime": 30, "status": 1, "channel": "sms"},
            {"waitingTime": "30", "status": "2", "channel": "call", "channelCut": 1.0},
        ],
    }
    assert normalize(parse_flow(payload)) == BASE


@given(snapshots())
def test_canonical_json_is_json_dumps_with_sorted_keys(snap: FlowSnapshot) -> None:
    """The hand-written canonical text is exactly what json.dumps writes for the snapshot."""
    expected = json.dumps(snap.as_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(snap) == expected
    assert json.loads(canonical_json(snap)) == snap.as_json()
