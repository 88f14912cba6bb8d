"""The vocabulary between fetching and writing: what the API said about each flow."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sync.core.snapshot import FlowSnapshot
from sync.errors import FlowError
from sync.vocabulary import Outcome


@dataclass(frozen=True, slots=True)
class Fetched:
    """The API returned this configuration."""

    flow_id: int
    snapshot: FlowSnapshot


@dataclass(frozen=True, slots=True)
class Gone:
    """The API says the flow no longer exists (`data: null`, or missing from `/flow/list`)."""

    flow_id: int


@dataclass(frozen=True, slots=True)
class Failed:
    """Fetching the flow failed; its stored configuration must stay as it is.

    `flow_id` is None for a listed item whose flowId no flow can have: its error is recorded
    without one (a run-level `error` event), and it still counts as one failed result.
    """

    flow_id: int | None
    error: FlowError


FetchResult = Fetched | Gone | Failed


@dataclass(slots=True)
class RunCounts:
    """The per-run counts of `sync_runs`; a restored flow counts as changed."""

    requested: int = 0
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0

    def add(self, outcomes: Counter[Outcome]) -> None:
        self.created += outcomes[Outcome.CREATED]
        self.changed += outcomes[Outcome.CHANGED] + outcomes[Outcome.RESTORED]
        self.unchanged += outcomes[Outcome.UNCHANGED]
        self.deleted += outcomes[Outcome.DELETED]
        self.failed += outcomes[Outcome.FAILED]

    @property
    def settled(self) -> int:
        return self.created + self.changed + self.unchanged + self.deleted + self.failed

    def as_columns(self) -> dict[str, int]:
        return {
            "flows_requested": self.requested,
            "flows_created": self.created,
            "flows_changed": self.changed,
            "flows_unchanged": self.unchanged,
            "flows_deleted": self.deleted,
            "flows_failed": self.failed,
        }
