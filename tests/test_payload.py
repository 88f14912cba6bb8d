"""The vendor's response bodies: lenient where a real API is sloppy, strict where a value cannot be trusted.

Every refusal is a `ValueError` whose message says why without echoing the body, since
the client turns it into a `PayloadError` that ends up in logs and in `flow_history`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.vendor.payload import ApiFlow, ApiNode, listed_flow_id, parse_envelope, parse_flow, parse_listing

VENDOR_EXAMPLE = b"""{
"status": "0",
"reason": "success",
"data": {
"flowId": 1,
"name": "name",
"flow": [
{
"waitingTime": 30,
"status": 1,
"channel": "sms",
"channelCut": 0
}
]
}
}"""
LONG = 10_000
MISSING = object()  # marks a key to leave out of a payload


def body(document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("raw", "status", "ok", "reason", "data"),
    [
        pytest.param(
            VENDOR_EXAMPLE,
            "0",
            True,
            "success",
            {
                "flowId": 1,
                "name": "name",
                "flow": [{"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 0}],
            },
            id="vendor-example",
        ),
        pytest.param(
            body({"status": "0", "reason": "success", "data": [], "requestId": "abc", "extra": {"x": [1]}}),
            "0",
            True,
            "success",
            [],
            id="unknown-fields",
        ),
        pytest.param(body({"status": 0, "data": None}), "0", True, None, None, id="status-number"),
        pytest.param(body({"status": -22, "reason": "param"}), "-22", False, "param", None, id="negative"),
        pytest.param(body({"status": " 0 "}), "0", True, None, None, id="status-padded"),
        pytest.param(body({"status": "-16", "reason": None}), "-16", False, None, None, id="reason-null"),
        pytest.param(
            '{"status":"0","data":{"name":"登录验证"}}'.encode(),
            "0",
            True,
            None,
            {"name": "登录验证"},
            id="utf-8-text",
        ),
        pytest.param(b' \r\n{"status": "0"}\n', "0", True, None, None, id="surrounding-whitespace"),
    ],
)
def test_parse_envelope_accepts(raw: bytes, status: str, ok: bool, reason: str | None, data: object) -> None:
    """The documented example and the usual sloppiness (extra fields, status as a number) decode."""
    envelope = parse_envelope(raw)
    assert (envelope.status, envelope.ok, envelope.reason, envelope.data) == (status, ok, reason, data)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param(b"", "empty body", id="empty"),
        pytest.param(b" \r\n\t", "empty body", id="whitespace"),
        pytest.param(b"<html><body><h1>502 Bad Gateway</h1></body></html>", "HTML page", id="html"),
        pytest.param(b'  <!DOCTYPE html><html lang="en">', "HTML page", id="html-doctype"),
        pytest.param(b'{"status": "0", "data": {"flowId": 1, "na', "not JSON", id="truncated"),
        pytest.param(b"OK", "not JSON", id="plain-text"),
        pytest.param(b"[1, 2]", "JSON list, not an object", id="array"),
        pytest.param(b'"success"', "JSON str, not an object", id="string"),
        pytest.param(b"0", "JSON int, not an object", id="number"),
        pytest.param(b"null", "not an object", id="null"),
        pytest.param(b'{"status": "0", "status": "-1"}', "duplicate key 'status'", id="duplicate-key"),
        pytest.param(b'{"status": "0", "data": {"flowId": 1, "flowId": 2}}', "key 'flowId'", id="nested"),
        pytest.param(b'{"status": "0", "reason": "\xff"}', "not UTF-8", id="invalid-byte"),
        pytest.param('{"status": "0", "reason": "café"}'.encode("latin-1"), "not UTF-8", id="latin-1"),
        pytest.param(
            b'{"status": "0", "reason": "\xed\xa0\x80"}',
            "not UTF-8",
            id="encoded-surrogate",
        ),
        pytest.param(
            '{"status": "0"}'.encode("utf-16"),
            "not UTF-8",
            id="utf-16",
        ),
        pytest.param(b'{"reason": "success"}', "status: Field required", id="no-status"),
        pytest.param(b'{"status": true}', "status: expected a status code, got bool", id="status-boolean"),
        pytest.param(b'{"status": 0.5}', "status: expected a status code, got float", id="status-float"),
        pytest.param(b'{"status": null}', "status: expected a status code, got null", id="status-null"),
        pytest.param(b'{"status": ["0"]}', "status: expected a status code, got list", id="status-list"),
        pytest.param(b"[" * 100_000, "nests too deeply", id="deep-nesting"),
    ],
)
def test_parse_envelope_refuses(raw: bytes, why: str) -> None:
    """A body that cannot be trusted is a ValueError saying what is wrong with it."""
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_envelope(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"<html>" + b"x" * LONG + b"</html>", id="html"),
        pytest.param(b"x" * LONG, id="text"),
        pytest.param(b'{"status": "0", "reason": "' + b"x" * LONG, id="truncated"),
        pytest.param(b'["' + b"x" * LONG + b'"]', id="array"),
        pytest.param(b'"' + b"x" * LONG + b'"', id="string"),
        pytest.param(b'{"status": ["' + b"x" * LONG + b'"]}', id="status-list"),
        pytest.param(b'{"status": {"' + b"x" * LONG + b'": 1}}', id="status-object"),
        pytest.param(b'{"' + b"k" * LONG + b'": 1, "' + b"k" * LONG + b'": 2}', id="duplicate-long-key"),
        pytest.param(b'{"status": "0", "reason": ' + b"1" * LONG + b"}", id="huge-number"),
        pytest.param(b'{"status": "0", "reason": "\xff' + b"x" * LONG + b'"}', id="not-utf-8"),
    ],
)
def test_refusals_do_not_echo_a_long_body(raw: bytes) -> None:
    """Whatever is wrong with a 10 kB body, the message stays short (it goes to logs and the database)."""
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - any message, but a short one
        parse_envelope(raw)
    assert len(str(caught.value)) < 300


def test_a_status_too_long_for_error_code_is_refused() -> None:
    """A 10 kB `status` is not a status code: it is refused briefly rather than carried into the error row."""
    with pytest.raises(ValueError, match="status") as caught:
        parse_envelope(body({"status": "E" * LONG, "reason": "?"}))
    assert len(str(caught.value)) < 300


def node(**fields: object) -> dict[str, object]:
    """A node as the API sends it, with `fields` replaced (or left out when MISSING)."""
    payload: dict[str, object] = {"waitingTime": 30, "status": 1, "channel": "sms", "channelCut": 0}
    payload.update(fields)
    return {key: value for key, value in payload.items() if value is not MISSING}


def flow(*nodes: object, **fields: object) -> dict[str, object]:
    """A flow as the API sends it: one default node unless `nodes` are given."""
    payload: dict[str, object] = {"flowId": 12, "name": "Login OTP", "flow": list(nodes) or [node()]}
    payload.update(fields)
    return {key: value for key, value in payload.items() if value is not MISSING}


def api_flow(*nodes: ApiNode, **fields: Any) -> ApiFlow:
    """The expected model: flow 12 "Login OTP" with one default node unless told otherwise."""
    values: dict[str, Any] = {"flow_id": 12, "name": "Login OTP", "nodes": nodes or (api_node(),)}
    values.update(fields)
    return ApiFlow(**values)


def api_node(**fields: Any) -> ApiNode:
    values: dict[str, Any] = {"waiting_time": 30, "status": 1, "channel": "sms", "channel_cut": 0}
    values.update(fields)
    return ApiNode(**values)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(flow(), api_flow(), id="documented-shape"),
        pytest.param(flow(flowId="12"), api_flow(), id="flow-id-string"),
        pytest.param(flow(node(waitingTime="30")), api_flow(), id="numeric-string"),
        pytest.param(flow(node(waitingTime=" 45 ")), api_flow(api_node(waiting_time=45)), id="padded-string"),
        pytest.param(flow(node(waitingTime="-7")), api_flow(api_node(waiting_time=-7)), id="negative-string"),
        pytest.param(flow(node(waitingTime=30.0)), api_flow(), id="integral-float"),
        pytest.param(flow(node(status=2.0, channelCut=1.0)), api_flow(api_node(status=2, channel_cut=1))),
        pytest.param(flow(node(channelCut=MISSING)), api_flow(), id="channel-cut-missing"),
        pytest.param(flow(node(waitingTime=5)), api_flow(api_node(waiting_time=5)), id="wait-5"),
        pytest.param(flow(node(waitingTime=3600)), api_flow(api_node(waiting_time=3600)), id="wait-3600"),
        pytest.param(flow(node(channel="fax")), api_flow(api_node(channel="fax")), id="channel-fax"),
        pytest.param(flow(node(channel="")), api_flow(api_node(channel="")), id="channel-empty"),
        pytest.param(flow(node(status=9)), api_flow(api_node(status=9)), id="status-9"),
        pytest.param(flow(node(channelCut=-1)), api_flow(api_node(channel_cut=-1)), id="cut-negative"),
        pytest.param(flow(flowId=-3), api_flow(flow_id=-3), id="flow-id-negative"),
        pytest.param(flow(name="ab"), api_flow(name="ab"), id="name-short"),
        pytest.param(flow(name="n" * 255), api_flow(name="n" * 255), id="name-255"),
        pytest.param(flow(node(channel="c" * 32)), api_flow(api_node(channel="c" * 32)), id="channel-32"),
        pytest.param(flow(name="登录 OTP ✓"), api_flow(name="登录 OTP ✓"), id="name-unicode"),
        pytest.param(
            flow(node(waitingTime=2**63 - 1, status=-(2**63))),
            api_flow(api_node(waiting_time=2**63 - 1, status=-(2**63))),
            id="64-bit-limits",
        ),
        pytest.param(flow(note="x", owner={"id": 1}), api_flow(), id="unknown-flow-fields"),
        pytest.param(flow(node(priority=3, tags=["a"])), api_flow(), id="unknown-node-fields"),
        pytest.param(
            flow(node(), node(waitingTime=60, status=2, channel="call", channelCut=1)),
            api_flow(api_node(), api_node(waiting_time=60, status=2, channel="call", channel_cut=1)),
            id="two-nodes-in-order",
        ),
        pytest.param(flow(flow=[]), api_flow(nodes=()), id="no-nodes"),
    ],
)
def test_parse_flow_accepts(payload: dict[str, object], expected: ApiFlow) -> None:
    """Numeric strings and integral floats are integers; values outside the documented ranges are kept."""
    assert parse_flow(payload) == expected


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        pytest.param(flow(node(waitingTime=True)), "flow.0.waitingTime: expected an integer, got a boolean"),
        pytest.param(flow(node(channelCut=False)), "flow.0.channelCut: expected an integer, got a boolean"),
        pytest.param(flow(flowId=True), "flowId: expected an integer, got a boolean"),
        pytest.param(flow(node(waitingTime=30.5)), "flow.0.waitingTime: expected an integer, got float"),
        pytest.param(
            flow(node(status="1.0")), "flow.0.status: expected an integer, got a string of 3 characters"
        ),
        pytest.param(flow(node(status="1e2")), "flow.0.status: expected an integer"),
        pytest.param(flow(node(status="")), "flow.0.status: expected an integer"),
        pytest.param(flow(node(status="one")), "flow.0.status: expected an integer"),
        pytest.param(flow(node(status=float("nan"))), "flow.0.status: expected an integer, got float"),
        pytest.param(flow(node(status=float("inf"))), "flow.0.status: expected an integer, got float"),
        pytest.param(flow(node(waitingTime=None)), "flow.0.waitingTime: expected an integer, got null"),
        pytest.param(flow(node(waitingTime=[30])), "flow.0.waitingTime: expected an integer, got list"),
        pytest.param(flow(name="Log\x00in"), "name: contains a NUL character"),
        pytest.param(flow(node(channel="sms\x00")), "flow.0.channel: contains a NUL character"),
        pytest.param(flow(name="n" * 256), "name: longer than 255 characters (256)"),
        pytest.param(flow(node(channel="c" * 33)), "flow.0.channel: longer than 32 characters (33)"),
        pytest.param(flow(node(waitingTime=2**63)), "flow.0.waitingTime: integer outside the 64-bit range"),
        pytest.param(flow(node(status=-(2**63) - 1)), "flow.0.status: integer outside the 64-bit range"),
        pytest.param(flow(flowId="9223372036854775808"), "flowId: integer outside the 64-bit range"),
        pytest.param(flow(flowId=1e19), "flowId: integer outside the 64-bit range"),
        pytest.param(flow(flowId="1" * 30), "flowId: expected an integer"),
        pytest.param(flow(flow=None), "flow: Input should be a valid tuple"),
        pytest.param(flow(flow="sms"), "flow: Input should be a valid tuple"),
        pytest.param(flow(flow={"0": node()}), "flow: Input should be a valid tuple"),
        pytest.param(flow(name=MISSING), "name: Field required"),
        pytest.param(flow(flowId=MISSING), "flowId: Field required"),
        pytest.param(flow(flow=MISSING), "flow: Field required"),
        pytest.param(flow(name=None), "name: expected a string, got null"),
        pytest.param(flow(name=1234), "name: expected a string, got int"),
        pytest.param(flow(node(channel=1)), "flow.0.channel: expected a string, got int"),
        pytest.param(flow(node(waitingTime=MISSING)), "flow.0.waitingTime: Field required"),
        pytest.param(flow(1), "flow.0: Input should be a valid dictionary"),
        pytest.param(flow("node"), "flow.0: Input should be a valid dictionary"),
        pytest.param(flow(node(), [node()]), "flow.1: Input should be a valid dictionary"),
        pytest.param(flow(node(), node(status="x")), "flow.1.status: expected an integer"),
        pytest.param(None, "flow data is null, not an object"),
        pytest.param([flow()], "flow data is list"),
        pytest.param("Login OTP", "flow data is a string"),
    ],
)
def test_parse_flow_refuses(payload: object, why: str) -> None:
    """A value that cannot be trusted is a ValueError naming the field path and the problem."""
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - the message is checked below
        parse_flow(payload)
    assert why in str(caught.value)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(flow(name="x" * LONG), id="long-name"),
        pytest.param(flow(node(waitingTime="9" * LONG)), id="long-numeric-string"),
        pytest.param(flow(node(channel=["sms"] * LONG)), id="long-list"),
        pytest.param(flow(flow=[1] * LONG), id="many-bad-nodes"),
        pytest.param(["x" * LONG], id="list-body"),
    ],
)
def test_parse_flow_messages_stay_short(payload: object) -> None:
    """A huge bad value is described, not echoed."""
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - any message, but a short one
        parse_flow(payload)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"flowId": 1, "name": "\\ud800 OTP", "flow": []}', "name"),
        ('{"flowId": 1, "name": "OTP", "flow": [{"waitingTime": 30, "status": 1, "channel": "\\udfff"}]}',
         "flow.0.channel"),
    ],
    ids=["name", "channel"],
)  # fmt: skip
def test_text_that_cannot_be_stored_as_utf8_is_refused(data: str, field: str) -> None:
    """A JSON escape of a lone surrogate is valid JSON but not storable text, so the flow is refused."""
    envelope = parse_envelope(b'{"status": "0", "data": ' + data.encode() + b"}")
    with pytest.raises(ValueError, match=f"^{re.escape(field)}: "):
        parse_flow(envelope.data)


# --- /flow/list: scanned, not decoded whole ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
listed_items = (
    st.fixed_dictionaries({"flowId": st.integers(0, 9) | st.text("0123", max_size=2)}) | json_values
)
envelope_members = st.lists(
    st.sampled_from(["status", "reason", "data", "extra"]).flatmap(
        lambda key: st.tuples(
            st.just(key),
            st.lists(listed_items, max_size=4) | json_values
            if key == "data"
            else st.sampled_from(["0", "-1", 0, None]) | json_values,
        )
    ),
    max_size=4,
)


@st.composite
def listing_bodies(draw: st.DrawFn) -> bytes:
    """Envelope-shaped JSON in any spacing, with duplicate keys allowed, sometimes cut or spoilt."""
    members = draw(envelope_members)
    space = draw(st.sampled_from(["", " ", "\n  "]))
    text = (
        "{"
        + ",".join(f"{space}{json.dumps(k)}{space}:{space}{json.dumps(v)}" for k, v in members)
        + space
        + "}"
    )
    text = draw(st.sampled_from(["", " ", "\ufeff"])) + text
    body = text.encode()
    cut = draw(st.none() | st.integers(0, len(body)))
    if cut is not None:
        body = body[:cut] + draw(st.sampled_from([b"", b"}", b",", b"]", b"x"])) + body[cut:]
    return body


def outcome(parse: Any, body: bytes) -> Any:
    try:
        return parse(body)
    except ValueError as exc:
        return str(exc)


@given(listing_bodies())
@settings(deadline=None)
def test_a_scanned_listing_says_what_the_whole_document_says(body: bytes) -> None:
    """`parse_listing` accepts and refuses exactly what `parse_envelope` does, with the same words."""
    whole, scanned = outcome(parse_envelope, body), outcome(parse_listing, body)
    if isinstance(whole, str):
        assert scanned == whole
        return
    envelope, items = scanned
    assert (envelope.status, envelope.reason) == (whole.status, whole.reason)
    if isinstance(whole.data, list):
        assert items is not None
        assert envelope.data is None
        assert list(items) == whole.data
        assert items.flow_ids == [listed_flow_id(item) for item in whole.data]
    else:
        assert items is None
        assert envelope.data == whole.data


def test_a_listing_keeps_its_items_as_text() -> None:
    """Scanning notes where each item is; the items are decoded again only when iterated."""
    body = b'{"status":"0","data":[{"flowId":1,"name":"a"} , {"flowId":"2"}]}'
    envelope, items = parse_listing(body)
    assert envelope.ok
    assert items is not None
    assert [items.text[items.bounds[i] : items.bounds[i + 1]] for i in (0, 2)] == [
        '{"flowId":1,"name":"a"}',
        '{"flowId":"2"}',
    ]
    assert (len(items), items.flow_ids, list(items)) == (
        2,
        [1, 2],
        [{"flowId": 1, "name": "a"}, {"flowId": "2"}],
    )
