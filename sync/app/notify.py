"""Change alerts: after a run that changed the configuration, or whose status differs from the
previous run's, POST a JSON summary to a webhook.

The body carries a top-level `text` that Slack- and Mattermost-style incoming webhooks show
as it is, and the same facts as fields for any other receiver. Vendor text (flow names,
values, API reasons) is neutralised and escaped for those receivers, so it is shown as
text, never as a link or markup. The secret and the `Sign` never reach a run's records,
so they cannot reach the body either.

Delivery happens after the run has recorded itself, so it can neither delay nor fail the
sync's own writes. It retries network failures, HTTP 429 and 5xx with backoff for a
bounded time; the outcome is returned for the caller to log and record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.wait import wait_exponential_jitter

from sync import __version__
from sync.core.safe_text import escape_unsafe
from sync.store.run_summary import RunSummary

log = logging.getLogger(__name__)

MAX_LINES = 20  # events spelled out in one alert; the rest are counted
ATTEMPT_TIMEOUT_S = 5.0
DELIVERY_BUDGET_S = 30.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """How sending one alert ended."""

    delivered: bool
    attempts: int
    error: str | None = None


class _Retryable(Exception):
    """A failure worth another attempt: the network, HTTP 429 or 5xx."""


def worth_notifying(summary: RunSummary) -> bool:
    """A run that created, changed, deleted or restored a flow, or whose status differs from the last."""
    return summary.events > 0 or summary.run.status != summary.previous_status


def alert_body(summary: RunSummary) -> dict[str, Any]:
    """The JSON body: the run, its counts, its configuration events (capped) and a readable `text`."""
    run = summary.run
    counts = run.counts
    changes = [
        {
            "flow_id": line.flow_id,
            "name": line.name,
            "event": line.event.value,
            "values": [dict(value) for value in line.values],
        }
        for line in summary.lines
    ]
    return {
        "text": alert_text(summary),
        "run_id": run.run_id,
        "status": run.status.value,
        "previous_status": summary.previous_status.value if summary.previous_status else None,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error_message": run.error_message,
        "counts": {column.removeprefix("flows_"): value for column, value in counts.as_columns().items()},
        "changes": changes,
        "changes_left_out": summary.events - len(changes),
    }


def alert_text(summary: RunSummary) -> str:
    """What a chat shows: a headline, one line per configuration event, and what was left out."""
    run = summary.run
    counts = run.counts
    status = run.status.value
    if summary.previous_status is not None and summary.previous_status != run.status:
        status += f" (was {summary.previous_status.value})"
    headline = (
        f"flowsync run {run.run_id} {status}: {counts.created} created, {counts.changed} changed, "
        f"{counts.deleted} deleted, {counts.failed} failed"
    )
    if run.error_message:
        headline += f": {_chat(run.error_message)}"
    lines = [headline]
    for line in summary.lines:
        subject = f"flow {line.flow_id}" + (f" {_chat(repr(line.name))}" if line.name is not None else "")
        values = "; ".join(
            f"{_chat(v['field'])} {_chat(str(v['old']))} -> {_chat(str(v['new']))}" for v in line.values
        )
        lines.append(f"- {subject}: {line.event.value}" + (f" {values}" if values else ""))
    left_out = summary.events - len(summary.lines)
    if left_out > 0:
        lines.append(f"- and {left_out} more (flowsync history --run-id {run.run_id})")
    return "\n".join(lines)


def _chat(text: str) -> str:
    """Vendor text for a chat: control characters neutralised, and the characters Slack and
    Mattermost read as markup (`&`, `<`, `>`) escaped, so a name cannot become a link or a mention."""
    return escape_unsafe(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def deliver(
    url: str,
    body: dict[str, Any],
    *,
    budget_s: float = DELIVERY_BUDGET_S,
    attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """POST `body` to `url`, retrying transient failures for at most `budget_s`; never raises.

    The budget is measured on `clock`, which advances with `sleep`: tests pass a fake pair.
    """
    attempts = 0
    started = clock()

    def out_of_budget(_state: RetryCallState) -> bool:
        return clock() - started >= budget_s

    retrying = Retrying(
        stop=out_of_budget,
        wait=wait_exponential_jitter(multiplier=0.5, max=8.0),
        retry=retry_if_exception_type(_Retryable),
        sleep=sleep,
        reraise=True,
    )
    headers = {"User-Agent": f"flowsync/{__version__}"}
    with httpx.Client(timeout=attempt_timeout_s, transport=transport, follow_redirects=False) as client:
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    try:
                        response = client.post(url, json=body, headers=headers)
                    except httpx.HTTPError as exc:
                        # An error's text may quote the URL, whose path may hold the hook's token.
                        raise _Retryable(f"{type(exc).__name__}: {exc}".replace(url, where(url))) from exc
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Retryable(f"HTTP {response.status_code}")
                    if not response.is_success:
                        return Delivery(False, attempts, f"HTTP {response.status_code}")
        except _Retryable as exc:
            return Delivery(False, attempts, str(exc))
    return Delivery(True, attempts)


def where(url: str) -> str:
    """The receiver named without its path or query: webhook URLs carry their secret there."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
