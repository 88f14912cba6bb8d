"""What `flowsync verify` expects of the tables, from `flow_history` alone, and how it words a difference.

`FlowReplay` takes one flow's events in `id` order and says what `flows`, `flow_nodes`,
`flow_versions` and `flow_version_nodes` must hold for that flow: the versions come from
the same `VersionLedger` the writer and the 0002 migration use, the current configuration
from the last configuration event, the failure streak from the `error` events after the
last successful fetch. `compare_rows` lists how stored rows differ from expected ones, by
key. Pure: plain values in, plain values out; the store streams the rows through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sync.core.snapshot import FlowSnapshot
from sync.core.versions import HistoryEvent, VersionLedger
from sync.vocabulary import Event, SyncState


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One difference: the table, the row's key (`id=12`, `flow_id=3, version_no=2`) and what differs."""

    table: str
    key: str
    problem: str

    def as_json(self) -> dict[str, str]:
        return {"table": self.table, "key": self.key, "problem": self.problem}


@dataclass(frozen=True, slots=True)
class FailedFetch:
    """An `error` event of the flow: when, and which kind and code it stored."""

    occurred_at: datetime
    error_kind: str | None
    error_code: str | None


@dataclass
class FlowReplay:
    """One flow's events, applied in order."""

    flow_id: int
    ledger: VersionLedger = field(default_factory=VersionLedger)
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    version_nodes: list[dict[str, Any]] = field(default_factory=list)
    snapshot: FlowSnapshot | None = None
    deleted_at: datetime | None = None
    first_seen_at: datetime | None = None
    failures: list[FailedFetch] = field(default_factory=list)

    def apply(self, event: HistoryEvent) -> None:
        """A configuration event (`created`, `changed`, `deleted`, `restored`)."""
        rows = self.ledger.apply(event)
        if rows.closed is not None and rows.closed.version_no in self.versions:
            self.versions[rows.closed.version_no].update(
                valid_to=rows.closed.valid_to,
                closed_by=rows.closed.closed_by,
                closed_by_event=rows.closed.closed_by_event,
                seconds_current=rows.closed.seconds_current,
            )
        if rows.opened is not None:
            self.versions[rows.opened.version_no] = rows.opened.version_row()
            self.version_nodes.extend(rows.opened.node_rows())
        if event.event == Event.CREATED and self.first_seen_at is None:
            self.first_seen_at = event.occurred_at
        if event.event == Event.DELETED:
            self.deleted_at = event.occurred_at
        elif event.snapshot is not None:
            self.snapshot = event.snapshot
            self.deleted_at = None

    def fail(self, failure: FailedFetch) -> None:
        self.failures.append(failure)

    @property
    def stored(self) -> bool:
        """Whether `flows` must hold the flow: some configuration event stored it."""
        return self.snapshot is not None

    def flow_row(self) -> dict[str, Any]:
        """The `flows` columns the configuration events decide."""
        assert self.snapshot is not None
        return {
            "name": self.snapshot.name,
            "node_count": len(self.snapshot.nodes),
            "content_hash": self.snapshot.content_hash,
            "first_seen_at": self.first_seen_at,
            "deleted_at": self.deleted_at,
        }

    def streak_problems(self, stored: Mapping[str, Any]) -> list[str]:
        """How the stored failure streak and `sync_state` disagree with the `error` events kept.

        `error` events are outside the chain and `flowsync prune` may delete old ones, so the
        events after the last successful fetch are a tail of the streak: the stored count may
        be larger, and then `failing_since` earlier, but never the other way round.
        """
        fetched = stored.get("last_fetched_at")
        streak = [f for f in self.failures if isinstance(fetched, datetime) and f.occurred_at > fetched]
        count = stored.get("consecutive_failures")
        since = stored.get("failing_since")
        deleted = self.deleted_at is not None
        failing = isinstance(count, int) and count > 0
        state = SyncState.DELETED if deleted else SyncState.ERROR if failing or streak else SyncState.OK
        problems = differences({"sync_state": str(state)}, stored)
        if not isinstance(count, int) or count < len(streak):
            problems.append(
                f"consecutive_failures is {shown(count)}, but flow_history holds {len(streak)} failed "
                "fetches since the last successful one"
            )
        elif streak and count == len(streak) and since != streak[0].occurred_at:
            problems.append(
                f"failing_since is {shown(since)}, flow_history says {shown(streak[0].occurred_at)}"
            )
        elif (
            streak
            and count > len(streak)
            and not (isinstance(since, datetime) and since < streak[0].occurred_at)
        ):
            problems.append(
                f"failing_since is {shown(since)}, but the streak's earliest kept failure is at "
                f"{shown(streak[0].occurred_at)}"
            )
        if streak:
            last = {"last_error_kind": streak[-1].error_kind, "last_error_code": streak[-1].error_code}
            problems.extend(differences(last, stored))
        elif not failing:
            problems.extend(
                differences({"failing_since": None, "last_error_kind": None, "last_error_code": None}, stored)
            )
        return problems

    def node_rows(self) -> list[dict[str, Any]]:
        """The `flow_nodes` rows: the nodes of the last configuration stored (kept while deleted)."""
        if self.snapshot is None:
            return []
        return [{"flow_id": self.flow_id, **node.as_json()} for node in self.snapshot.nodes]


def compare_rows(
    table: str,
    keys: Sequence[str],
    expected: Iterable[Mapping[str, Any]],
    stored: Iterable[Mapping[str, Any]],
) -> list[Disagreement]:
    """Rows missing, rows unexpected, and each column that differs, by the rows' `keys`."""
    wanted = {tuple(row[k] for k in keys): row for row in expected}
    found = {tuple(row[k] for k in keys): row for row in stored}
    if wanted == found and all(_typed_alike(wanted[k], found[k]) for k in wanted):
        return []  # the common case, at the speed of dict comparison
    problems: list[Disagreement] = []
    for key in sorted(wanted.keys() | found.keys(), key=_sortable):
        name = ", ".join(f"{k}={v}" for k, v in zip(keys, key, strict=True))
        if key not in found:
            problems.append(Disagreement(table, name, "missing: flow_history says the row should exist"))
        elif key not in wanted:
            problems.append(Disagreement(table, name, "unexpected: no event in flow_history accounts for it"))
        else:
            problems.extend(
                Disagreement(table, name, difference)
                for difference in differences(wanted[key], found[key], skip=keys)
            )
    return problems


def differences(
    expected: Mapping[str, Any], stored: Mapping[str, Any], skip: Sequence[str] = ()
) -> list[str]:
    """`column is X, flow_history says Y` for each column of `expected` that `stored` holds otherwise."""
    return [
        f"{column} is {shown(stored.get(column))}, flow_history says {shown(value)}"
        for column, value in expected.items()
        if column not in skip and not _same(value, stored.get(column))
    ]


def shown(value: object) -> str:
    """A value in a message: timestamps in ISO form, text quoted, null as `null`."""
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def _typed_alike(expected: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """No text column holds a number where text belongs (1 == True, but "1" != 1 already fails ==)."""
    return all(type(stored.get(c)) is str for c, v in expected.items() if type(v) is str)


def _same(expected: object, stored: object) -> bool:
    if isinstance(expected, str) and not isinstance(stored, str) and stored is not None:
        return False
    return expected == stored


def _sortable(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, str(part)) for part in key)
