"""The audit chain: each configuration event's `chain_hash`, from the one before it.

Every `created`, `changed`, `deleted` and `restored` row of `flow_history` carries
`chain_hash`: SHA-256 (or, with an audit key, HMAC-SHA-256 under that key) of the
canonical encoding of its audited columns together with the previous configuration
event's `chain_hash` (`null` for the first). `error` rows are outside the chain.

The encoding is specified byte for byte in docs/audit.md, so that an auditor can
recompute the chain with a few lines of their own; a test holds this module to a
copy written from that text alone. Pure: plain values in, text out.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync.vocabulary import Event

CHAINED_EVENTS = frozenset({Event.CREATED, Event.CHANGED, Event.DELETED, Event.RESTORED})
# `json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)`, built once:
# json.dumps builds a new encoder on every call with these arguments, a quarter of the time.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True, slots=True)
class ChainedEvent:
    """The audited columns of one configuration event, as `flow_history` stores them."""

    id: int
    run_id: int | None
    flow_id: int | None
    occurred_at: datetime
    event: str
    changes: Any  # the decoded JSON document, or None
    snapshot: Any  # the decoded JSON document, or None
    content_hash: str | None


def is_chained(event: str) -> bool:
    """True for the events the chain covers: every one but `error`."""
    return event in CHAINED_EVENTS


@functools.lru_cache(maxsize=64)  # a batch's events share one moment
def timestamp_text(moment: datetime) -> str:
    """`occurred_at` as the encoding writes it: UTC, six fraction digits, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode(previous: str | None, event: ChainedEvent) -> bytes:
    """The exact bytes that are hashed (docs/audit.md, "The encoding").

    One JSON object with sorted keys (nested ones too), no spaces, every character
    outside ASCII escaped, so the bytes are ASCII.
    """
    document = {
        "changes": event.changes,
        "content_hash": event.content_hash,
        "event": event.event,
        "flow_id": event.flow_id,
        "id": event.id,
        "occurred_at": timestamp_text(event.occurred_at),
        "previous": previous,
        "run_id": event.run_id,
        "snapshot": event.snapshot,
    }
    return _ENCODER.encode(document).encode("ascii")


@dataclass(frozen=True)
class ChainHasher:
    """Links events into the chain: plain SHA-256, or HMAC-SHA-256 under the audit key.

    The key is held as bytes and never shown: it is left out of `repr`.
    """

    key: bytes | None = field(default=None, repr=False)

    @classmethod
    def keyed(cls, key: str | None) -> ChainHasher:
        return cls(key.encode("utf-8") if key else None)

    @property
    def kind(self) -> str:
        """`hmac-sha256` with a key, `sha256` without; what `verify` says it checked."""
        return "hmac-sha256" if self.key is not None else "sha256"

    def link(self, previous: str | None, event: ChainedEvent) -> str:
        """This event's `chain_hash`, given the previous configuration event's (None for the first)."""
        data = encode(previous, event)
        if self.key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()
