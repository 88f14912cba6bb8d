"""Which flows a run syncs: `all`, or IDs and inclusive ranges such as `1,2,10-20`.

The selection keeps ranges, not expanded IDs, so `1-1000000` costs nothing until
a run walks it, and overlapping ranges are merged so no flow is fetched twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_PART = re.compile(r"^\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?$")
# The one rule for a flow ID, wherever one comes from: a setting, `history --flow-id`, a listing.
MIN_FLOW_ID = 1
MAX_FLOW_ID = 2**63 - 1  # flows.flow_id is a signed 64-bit column
FLOW_ID_RULE = f"flow IDs run from {MIN_FLOW_ID} to {MAX_FLOW_ID}"


def is_flow_id(value: int) -> bool:
    """Whether `value` can be a flow's ID."""
    return MIN_FLOW_ID <= value <= MAX_FLOW_ID


@dataclass(frozen=True, slots=True)
class FlowSelection:
    """`everything` (sync what `/flow/list` returns) or merged, sorted inclusive ranges."""

    everything: bool
    ranges: tuple[tuple[int, int], ...] = ()

    def __iter__(self) -> Iterator[int]:
        for low, high in self.ranges:
            yield from range(low, high + 1)

    def __len__(self) -> int:
        return sum(high - low + 1 for low, high in self.ranges)

    def __str__(self) -> str:
        if self.everything:
            return "all"
        return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in self.ranges)


ALL = FlowSelection(everything=True)


def parse_flow_ids(value: str | int | Iterable[str | int]) -> FlowSelection:
    """Parse `all`, `"1,2,10-20"` or a TOML list like `[1, 2, "10-20"]`; `ValueError` says what is wrong."""
    if isinstance(value, bool):
        raise ValueError("expected flow IDs such as '1,2,10-20' or 'all'")
    if isinstance(value, int):
        parts: list[str] = [str(value)]
    elif isinstance(value, str):
        if value.strip().lower() == "all":
            return ALL
        parts = value.split(",")
    else:
        parts = [str(item) for item in value]
    ranges: list[tuple[int, int]] = []
    for part in parts:
        match = _PART.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not a flow ID or an inclusive range such as 10-20")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low < MIN_FLOW_ID:
            raise ValueError(f"{part.strip()!r}: flow IDs start at {MIN_FLOW_ID}")
        if high < low:
            raise ValueError(f"{part.strip()!r}: the range ends before it starts")
        if not (is_flow_id(low) and is_flow_id(high)):
            raise ValueError(f"{part.strip()!r}: flow IDs are 64-bit (at most {MAX_FLOW_ID})")
        ranges.append((low, high))
    if not ranges:
        raise ValueError("no flow IDs given")
    return FlowSelection(everything=False, ranges=_merge(ranges))


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)
