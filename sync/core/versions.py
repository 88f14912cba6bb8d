"""What a flow's history of events means as plain tables: versions, their nodes, changed values.

A flow's configuration events (`created`, `changed`, `deleted`, `restored`) cut its time
into versions: each event that stores a configuration opens a version, and the next
`changed` or `deleted` closes it. Every scalar value a `changed` or `restored` event
changed becomes one change row, a whole node added or removed one row per attribute.

`VersionLedger` applies one flow's events in order and says which rows to write. The
writer feeds it each new event (seeded with the flow's latest stored version), the
0002 migration and `flowsync verify` feed it a flow's whole history: all three derive
the same rows from the same events. Pure: plain data in, plain rows out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sync.core.diff import Change
from sync.core.snapshot import NODE_FIELDS, FlowSnapshot
from sync.vocabulary import Event

OPENING = (Event.CREATED, Event.CHANGED, Event.RESTORED)
CLOSING = (Event.CHANGED, Event.DELETED)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One configuration event of a flow, as `flow_history` holds it."""

    history_id: int
    run_id: int | None
    flow_id: int
    occurred_at: datetime
    event: Event
    snapshot: FlowSnapshot | None = None  # the configuration after the event (not for `deleted`)
    changes: Sequence[Change] = ()


@dataclass(frozen=True, slots=True)
class OpenVersion:
    """The version that is current, as far as closing it needs to know."""

    version_no: int
    valid_from: datetime


@dataclass(frozen=True, slots=True)
class VersionClosed:
    """Set `valid_to` and what closed it on an existing `flow_versions` row."""

    flow_id: int
    version_no: int
    valid_to: datetime
    closed_by: int
    closed_by_event: Event
    seconds_current: int


@dataclass(frozen=True, slots=True)
class VersionOpened:
    """A new `flow_versions` row and its `flow_version_nodes` rows."""

    flow_id: int
    version_no: int
    valid_from: datetime
    snapshot: FlowSnapshot
    opened_by: int
    opened_by_event: Event

    def version_row(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "version_no": self.version_no,
            "valid_from": self.valid_from,
            "valid_to": None,
            "name": self.snapshot.name,
            "node_count": len(self.snapshot.nodes),
            "content_hash": self.snapshot.content_hash,
            "opened_by": self.opened_by,
            "closed_by": None,
            "opened_by_event": self.opened_by_event,
            "closed_by_event": None,
            "seconds_current": None,
        }

    def node_rows(self) -> list[dict[str, Any]]:
        return [
            {"flow_id": self.flow_id, "version_no": self.version_no, **node.as_json()}
            for node in self.snapshot.nodes
        ]


@dataclass(frozen=True, slots=True)
class ChangedValue:
    """One `flow_changes` row, without the columns copied from its event."""

    change_no: int
    field: str
    position: int | None
    attribute: str
    change_kind: str  # modified, added, removed
    old_value: str | None
    new_value: str | None


@dataclass(slots=True)
class EventRows:
    """What one event adds to the plain tables."""

    closed: VersionClosed | None = None
    opened: VersionOpened | None = None
    changed_values: list[ChangedValue] = field(default_factory=list)

    def change_rows(self, event: HistoryEvent) -> list[dict[str, Any]]:
        """The `flow_changes` rows, with the columns copied from `event`."""
        copied = {
            "history_id": event.history_id,
            "run_id": event.run_id,
            "flow_id": event.flow_id,
            "occurred_at": event.occurred_at,
            "occurred_on": utc_day(event.occurred_at),
            "event": event.event,
        }
        return [
            {
                **copied,
                "change_no": value.change_no,
                "field": value.field,
                "position": value.position,
                "attribute": value.attribute,
                "change_kind": value.change_kind,
                "old_value": value.old_value,
                "new_value": value.new_value,
            }
            for value in self.changed_values
        ]


class VersionLedger:
    """One flow's versions, event by event: which version is open and which number comes next."""

    def __init__(self, latest_version_no: int = 0, open_version: OpenVersion | None = None) -> None:
        self.latest_version_no = latest_version_no
        self.open_version = open_version

    def apply(self, event: HistoryEvent) -> EventRows:
        """The rows `event` adds; an `error` event adds none."""
        rows = EventRows()
        if event.event in CLOSING and self.open_version is not None:
            rows.closed = VersionClosed(
                flow_id=event.flow_id,
                version_no=self.open_version.version_no,
                valid_to=event.occurred_at,
                closed_by=event.history_id,
                closed_by_event=event.event,
                seconds_current=whole_seconds(event.occurred_at - self.open_version.valid_from),
            )
            self.open_version = None
        if event.event in OPENING and event.snapshot is not None:
            self.latest_version_no += 1
            rows.opened = VersionOpened(
                flow_id=event.flow_id,
                version_no=self.latest_version_no,
                valid_from=event.occurred_at,
                snapshot=event.snapshot,
                opened_by=event.history_id,
                opened_by_event=event.event,
            )
            self.open_version = OpenVersion(self.latest_version_no, event.occurred_at)
        if event.event in (Event.CHANGED, Event.RESTORED):
            rows.changed_values = changed_values(event.changes)
        return rows


def changed_values(changes: Sequence[Change]) -> list[ChangedValue]:
    """One row per scalar value in a `changes` list, numbered from 1 in its order.

    `name` and `nodes[P].<attribute>` are one row each; a whole node added (`old` null) or
    removed (`new` null) as `nodes[P]` is one row per attribute, in column order.
    """
    values: list[ChangedValue] = []
    for change in changes:
        field_name = str(change.get("field", ""))
        old, new = change.get("old"), change.get("new")
        position, attribute = _parse_field(field_name)
        if position is not None and attribute is None:
            kind = "added" if old is None else "removed" if new is None else "modified"
            old_node = old if isinstance(old, dict) else {}
            new_node = new if isinstance(new, dict) else {}
            for name in NODE_FIELDS:
                values.append(
                    ChangedValue(
                        change_no=len(values) + 1,
                        field=f"nodes[{position}].{name}",
                        position=position,
                        attribute=name,
                        change_kind=kind,
                        old_value=value_text(old_node.get(name)),
                        new_value=value_text(new_node.get(name)),
                    )
                )
            continue
        values.append(
            ChangedValue(
                change_no=len(values) + 1,
                field=field_name,
                position=position,
                attribute=attribute or field_name,
                change_kind="modified",
                old_value=value_text(old),
                new_value=value_text(new),
            )
        )
    return values


def _parse_field(field_name: str) -> tuple[int | None, str | None]:
    """`name` -> (None, "name"); `nodes[3].status` -> (3, "status"); `nodes[3]` -> (3, None)."""
    if not field_name.startswith("nodes["):
        return None, field_name
    inside, _, rest = field_name.removeprefix("nodes[").partition("]")
    position = int(inside) if inside.isascii() and inside.isdigit() else None
    return position, rest.removeprefix(".") or None


def value_text(value: object) -> str | None:
    """A changed value as text: integers in decimal, text as it is, null as SQL NULL."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def whole_seconds(span: timedelta) -> int:
    """Whole seconds in `span`, rounded down."""
    return span // timedelta(seconds=1)


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an aware timestamp."""
    return moment.astimezone(UTC).date()
