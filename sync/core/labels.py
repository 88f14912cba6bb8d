"""What the vendor's node codes mean, in the words its documentation uses.

The codes are stored as received; a code the vendor does not document has no label.
"""

from __future__ import annotations

STATUS_LABELS = {1: "sending failed", 2: "not verified"}
"""`flow_nodes.status`: the condition that triggers the node."""

CHANNEL_CUT_LABELS = {0: "switch channel", 1: "do not switch"}
"""`flow_nodes.channel_cut` (note the inverted sense: 0 switches)."""


def status_label(code: object) -> str | None:
    return STATUS_LABELS.get(code) if isinstance(code, int) and not isinstance(code, bool) else None


def channel_cut_label(code: object) -> str | None:
    return CHANNEL_CUT_LABELS.get(code) if isinstance(code, int) and not isinstance(code, bool) else None
