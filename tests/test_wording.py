"""The readable lines `flowsync history` prints for each `flow_history` row, on plain data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sync.cli.wording import describe_change, describe_event
from sync.store.reports import Corrupt, HistoryEntry

SMS = {"waiting_time": 30, "status": 1, "channel": "sms", "channel_cut": 0}
CALL = {"waiting_time": 60, "status": 2, "channel": "call", "channel_cut": 1}
SMS_TEXT = '(waiting_time 30, status 1 (sending failed), channel "sms", channel_cut 0 (switch channel))'
CALL_TEXT = '(waiting_time 60, status 2 (not verified), channel "call", channel_cut 1 (do not switch))'


def snapshot(name: str, *nodes: dict[str, Any], flow_id: int = 12) -> dict[str, Any]:
    """A `flow_history.snapshot` document."""
    return {
        "flow_id": flow_id,
        "name": name,
        "nodes": [{"position": position, **node} for position, node in enumerate(nodes, start=1)],
    }


def row(event: str, flow_id: int | None = 12, **columns: Any) -> HistoryEntry:
    """A `flow_history` row joined with the flow's current name, as `reports.history` reads it."""
    values: dict[str, Any] = {
        "id": 1,
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "run_id": 1,
        "flow_id": flow_id,
        "event": event,
        "changes": None,
        "snapshot": None,
        "error_kind": None,
        "error_code": None,
        "error_message": None,
        "current_name": None,
    }
    values.update(columns)
    return HistoryEntry(**values)


def change(field: str, old: Any, new: Any) -> dict[str, Any]:
    return {"field": field, "old": old, "new": new}


@pytest.mark.parametrize(
    ("history_row", "lines"),
    [
        pytest.param(
            row("created", snapshot=snapshot("Login OTP", SMS, CALL)),
            ['flow 12 "Login OTP": created with 2 nodes'],
            id="created",
        ),
        pytest.param(
            row("created", snapshot=snapshot("Login OTP", SMS)),
            ['flow 12 "Login OTP": created with 1 node'],
            id="created-one-node",
        ),
        pytest.param(
            row("created", snapshot=snapshot("Login OTP")),
            ['flow 12 "Login OTP": created with 0 nodes'],
            id="created-empty",
        ),
        pytest.param(
            row(
                "changed",
                snapshot=snapshot("Login OTP", SMS, CALL),
                changes=[
                    change("name", "Login", "Login OTP"),
                    change("nodes[2].waiting_time", 30, 60),
                    change("nodes[2].channel", "sms", "call"),
                ],
            ),
            [
                'flow 12 "Login OTP": name "Login" -> "Login OTP"',
                'flow 12 "Login OTP": nodes[2].waiting_time 30 -> 60',
                'flow 12 "Login OTP": nodes[2].channel "sms" -> "call"',
            ],
            id="changed-several",
        ),
        pytest.param(
            row(
                "changed", snapshot=snapshot("Login OTP", SMS, CALL), changes=[change("nodes[2]", None, CALL)]
            ),
            ['flow 12 "Login OTP": nodes[2] added ' + CALL_TEXT],
            id="node-added",
        ),
        pytest.param(
            row("changed", snapshot=snapshot("Login OTP", SMS), changes=[change("nodes[2]", CALL, None)]),
            ['flow 12 "Login OTP": nodes[2] removed ' + CALL_TEXT],
            id="node-removed",
        ),
        pytest.param(
            row("changed", snapshot=snapshot("Login OTP", SMS), changes=[]),
            ['flow 12 "Login OTP": changed'],
            id="changed-without-changes",
        ),
        pytest.param(
            row("deleted", snapshot=snapshot("Login OTP", SMS)),
            ['flow 12 "Login OTP": deleted'],
            id="deleted",
        ),
        pytest.param(
            row("deleted", current_name="Login OTP"),
            ['flow 12 "Login OTP": deleted'],
            id="deleted-named-from-flows",
        ),
        pytest.param(row("deleted"), ["flow 12: deleted"], id="deleted-unnamed"),
        pytest.param(row("deleted", current_name=5), ['flow 12 "5": deleted'], id="name-stored-as-a-number"),
        pytest.param(
            row("restored", snapshot=snapshot("Login OTP", SMS)),
            ['flow 12 "Login OTP": restored'],
            id="restored-unchanged",
        ),
        pytest.param(
            row(
                "restored",
                snapshot=snapshot("Login OTP", SMS),
                changes=[change("nodes[1].status", 2, 1), change("nodes[2]", CALL, None)],
            ),
            [
                'flow 12 "Login OTP": restored',
                'flow 12 "Login OTP": nodes[1].status 2 (not verified) -> 1 (sending failed)',
                'flow 12 "Login OTP": nodes[2] removed ' + CALL_TEXT,
            ],
            id="restored-with-changes",
        ),
        pytest.param(
            row(
                "error",
                flow_id=7,
                current_name="Signup",
                error_kind="api",
                error_code="-22",
                error_message="API status -22 (parameter error)",
            ),
            ['flow 7 "Signup": api error -22: API status -22 (parameter error)'],
            id="error-api",
        ),
        pytest.param(
            row(
                "error",
                flow_id=7,
                error_kind="http",
                error_code="503",
                error_message="HTTP 503 Service Unavailable",
            ),
            ["flow 7: http error 503: HTTP 503 Service Unavailable"],
            id="error-http-never-fetched",
        ),
        pytest.param(
            row(
                "error", flow_id=7, error_kind="network", error_message="no answer within 10 s (ReadTimeout)"
            ),
            ["flow 7: network error: no answer within 10 s (ReadTimeout)"],
            id="error-network-no-code",
        ),
        pytest.param(
            row("error", flow_id=7, error_kind="payload", error_message="body is an HTML page"),
            ["flow 7: payload error: body is an HTML page"],
            id="error-payload",
        ),
        pytest.param(
            row("error", flow_id=7, error_message="something failed"),
            ["flow 7: unknown error: something failed"],
            id="error-without-kind",
        ),
        pytest.param(
            row(
                "error",
                flow_id=None,
                error_kind="api",
                error_code="-1",
                error_message="API status -1 (authentication failed); check the key and secret",
            ),
            ["account: api error -1: API status -1 (authentication failed); check the key and secret"],
            id="error-account",
        ),
        pytest.param(
            row("created", flow_id=5, snapshot=snapshot('Say "hi" 登录', SMS, flow_id=5)),
            ['flow 5 "Say \\"hi\\" 登录": created with 1 node'],
            id="name-quoted-unicode-kept",
        ),
        pytest.param(
            row("created", flow_id=5, snapshot=snapshot("C:\\temp [x]", flow_id=5)),
            ['flow 5 "C:\\\\temp [x]": created with 0 nodes'],
            id="name-backslash-escaped-brackets-kept",
        ),
        pytest.param(
            row("deleted", flow_id=5, snapshot=snapshot("a\x1bb\u202ec\nd", flow_id=5)),
            ['flow 5 "a\x1bb\u202ec\nd": deleted'],
            id="name-raw-for-the-printer-to-escape",
        ),
        pytest.param(
            row("changed", snapshot=Corrupt("is not valid JSON"), current_name="Login OTP", id=345),
            ["flow 12: event 345 is corrupt (snapshot is not valid JSON)"],
            id="corrupt-snapshot",
        ),
        pytest.param(
            row(
                "changed",
                flow_id=None,
                occurred_at=Corrupt("is not a timestamp"),
                changes=Corrupt("is not a JSON list"),
                id=7,
            ),
            ["account: event 7 is corrupt (occurred_at is not a timestamp; changes is not a JSON list)"],
            id="corrupt-account-row-every-problem",
        ),
        pytest.param(
            row(
                "changed",
                snapshot=snapshot("Renamed", SMS),
                current_name="Later name",
                changes=[change("name", "Login OTP", "Renamed")],
            ),
            ['flow 12 "Renamed": name "Login OTP" -> "Renamed"'],
            id="name-as-of-the-event",
        ),
    ],
)
def test_describe_event(history_row: HistoryEntry, lines: list[str]) -> None:
    """Each event reads `flow ID "name": what happened`, one line per change, the name as of the event."""
    assert describe_event(history_row) == lines


@pytest.mark.parametrize(
    ("stored", "text"),
    [
        (change("name", "Login", "Login OTP"), 'name "Login" -> "Login OTP"'),
        (change("name", "a\nb", "登录"), 'name "a\nb" -> "登录"'),
        (change("name", 'say "hi"', "back\\slash"), 'name "say \\"hi\\"" -> "back\\\\slash"'),
        (change("nodes[2].waiting_time", 30, 60), "nodes[2].waiting_time 30 -> 60"),
        (change("nodes[1].channel", "sms", "fax"), 'nodes[1].channel "sms" -> "fax"'),
        (change("nodes[1].channel_cut", 0, -1), "nodes[1].channel_cut 0 (switch channel) -> -1"),
        (change("nodes[1].status", 2, 1), "nodes[1].status 2 (not verified) -> 1 (sending failed)"),
        (change("nodes[1].status", 1, 7), "nodes[1].status 1 (sending failed) -> 7"),
        (change("nodes[1].status", "1", 2), 'nodes[1].status "1" -> 2 (not verified)'),
        (change("nodes[3]", None, SMS), "nodes[3] added " + SMS_TEXT),
        (change("nodes[3]", SMS, None), "nodes[3] removed " + SMS_TEXT),
        ({"field": "nodes[4]", "new": CALL}, "nodes[4] added " + CALL_TEXT),
    ],
)
def test_describe_change(stored: dict[str, Any], text: str) -> None:
    """A field change reads `field old -> new`, strings quoted; a whole node lists its columns."""
    assert describe_change(stored) == text


def test_a_whole_node_lists_its_columns_in_table_order_whatever_the_stored_key_order() -> None:
    """A node read back from a JSON column that sorted its keys reads the same as one that kept them."""
    reordered = {"status": 2, "channel": "call", "channel_cut": 1, "waiting_time": 60}
    assert describe_change(change("nodes[4]", None, reordered)) == "nodes[4] added " + CALL_TEXT
