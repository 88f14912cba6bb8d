"""The words flowsync stores and shows, defined once.

Each value is exactly what the tables hold (`../CONTRACT.md` names them), so a member
compares equal to the stored text and binds as that text on every database.
"""

from __future__ import annotations

from enum import StrEnum


class SyncState(StrEnum):
    """`flows.sync_state`: how the latest fetch of a flow went."""

    OK = "ok"
    ERROR = "error"  # the latest fetch failed; the row keeps the last good configuration
    DELETED = "deleted"


class RunStatus(StrEnum):
    """`sync_runs.status`."""

    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"  # some flows failed
    FAILED = "failed"  # an account-level error, a lost database, a stop or a crash ended it


class AlertStatus(StrEnum):
    """`sync_runs.alert_status`: how the run's change alert ended (null when none was due)."""

    SENT = "sent"
    FAILED = "failed"


class Event(StrEnum):
    """`flow_history.event`."""

    CREATED = "created"
    CHANGED = "changed"
    DELETED = "deleted"
    RESTORED = "restored"
    ERROR = "error"


class ErrorKind(StrEnum):
    """`flow_history.error_kind`: which side failed."""

    API = "api"  # the API answered with a non-zero status
    HTTP = "http"  # a non-200 HTTP status
    NETWORK = "network"  # connect, reset or timeout
    PAYLOAD = "payload"  # a body that cannot be trusted
    DATABASE = "database"  # the database refused this flow's values


class Trigger(StrEnum):
    """`sync_runs.triggered_by`."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    DEMO = "demo"


class Outcome(StrEnum):
    """What one flow's result did in a run; `restored` counts as changed in `sync_runs`."""

    CREATED = "created"
    CHANGED = "changed"
    RESTORED = "restored"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    FAILED = "failed"
