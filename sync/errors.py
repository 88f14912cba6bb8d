"""Every error flowsync raises on purpose, in one tree.

    FlowsyncError
    ├── ConfigError              a setting is missing or malformed (exit 2)
    ├── SchemaError              the database is missing or not at the latest migration (exit 2)
    ├── LockHeld                 another run holds the sync lock (exit 3)
    ├── StoreError               the database failed while a run was writing (the run stops)
    └── FlowError                one flow (or the listing) could not be synced: an `error` event
        ├── DatabaseRefusal      the database refused this flow's values, or its stored row is corrupt
        └── ApiError             one request to the vendor API failed for good
            ├── AccountError     -1 / -2: the account itself is refused; the run stops at once
            ├── ClockSkewError   -16 even after re-signing with the server's clock
            ├── TransientError   -18, HTTP 429/5xx, connect/read errors: retries ran out
            ├── FlowRequestError -22 or another non-200 HTTP status: this flow only
            └── PayloadError     the body is not JSON, not the documented shape, or about another flow

A `FlowError` carries what an operator needs to act (`flow_id`, and the `kind`, `code`
and `message` stored in `flow_history`; an `ApiError` also its `endpoint`) and never the
secret or the `Sign` header: messages are built from the response status and body shape only.
"""

from __future__ import annotations

from sync.vocabulary import ErrorKind


class FlowsyncError(Exception):
    """Base of every error flowsync raises on purpose."""


class ConfigError(FlowsyncError):
    """A setting is missing or malformed; `setting` names it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class SchemaError(FlowsyncError):
    """The database schema is missing, behind or ahead of this flowsync."""


class LockHeld(FlowsyncError):
    """Another run holds the sync lock of this database."""


class StoreError(FlowsyncError):
    """The database failed while a run was reading or writing it."""


class FlowError(FlowsyncError):
    """One flow (or the run's listing) could not be synced; recorded as its `error` event."""

    kind: ErrorKind
    message: str
    flow_id: int | None
    code: str | None


class DatabaseRefusal(FlowError):
    """The database refused this flow's values, or the flow's stored row cannot be read."""

    kind = ErrorKind.DATABASE

    def __init__(self, message: str, *, flow_id: int | None) -> None:
        super().__init__(f"flow {flow_id}: {message}" if flow_id is not None else message)
        self.message = message
        self.flow_id = flow_id
        self.code = None


class ApiError(FlowError):
    """One request to the vendor API failed after everything worth trying."""

    kind: ErrorKind = ErrorKind.API

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        flow_id: int | None = None,
        code: str | None = None,
        kind: ErrorKind | None = None,
    ) -> None:
        where = f"flow {flow_id}" if flow_id is not None else endpoint
        super().__init__(f"{where}: {message}")
        self.message = message
        self.endpoint = endpoint
        self.flow_id = flow_id
        self.code = code
        if kind is not None:
            self.kind = kind


class AccountError(ApiError):
    """The API refused the account (`-1` bad key or sign, `-2` IP not allowed)."""


class ClockSkewError(ApiError):
    """The API kept answering `-16` (timestamp expired) after re-signing with its clock."""


class TransientError(ApiError):
    """A failure worth retrying (`-18`, HTTP 429/5xx, network) that outlasted the retries."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        flow_id: int | None = None,
        code: str | None = None,
        kind: ErrorKind | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, flow_id=flow_id, code=code, kind=kind)
        self.retry_after_s = retry_after_s


class FlowRequestError(ApiError):
    """The API refused this one request (`-22`, or an HTTP status that is not worth retrying)."""


class PayloadError(ApiError):
    """The body cannot be trusted: not JSON, not the documented shape, or about another flow."""

    kind: ErrorKind = ErrorKind.PAYLOAD
