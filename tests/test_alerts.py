"""Change alerts: when one is sent, what it says, and how delivery copes with a receiver that fails.

The receiver is a real HTTP server on loopback that answers as each test scripts it: a
status code per request, or no answer at all until the test ends.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.app.notify import deliver, where
from sync.app.settings import Settings
from sync.pipeline.loop import RunReport
from sync.simulator import Fault, SimulatorHandle
from sync.store.schema import sync_runs
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger
from tests.conftest import settings_for
from tests.process import flowsync, flowsync_env

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)


class FakeClock:
    """Time that passes only when delivery sleeps between attempts, so budgets are exact."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Receiver:
    """What the webhook receiver was sent, and how it answers the next requests."""

    statuses: list[int] = field(default_factory=list)  # one per request, then 200
    hang: threading.Event | None = None  # set: hold every request until the event is set
    bodies: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.bodies.append(json.loads(body))
            if state.hang is not None:
                state.hang.wait(30)
                return
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0K3N"
    try:
        yield state
    finally:
        if state.hang is not None:
            state.hang.set()
        server.shutdown()
        server.server_close()


def sync(settings: Settings, engine: Engine) -> RunReport:
    return jobs.sync_once(settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST)


def test_alerts_follow_changes_and_status_changes_only(
    engine: Engine, sim: SimulatorHandle, database_url: str, receiver: Receiver
) -> None:
    """First run: an alert. Nothing changed, same status: none. A status change or a changed flow: one."""
    settings = settings_for(sim, database_url, "1-5", notify_url=receiver.url)
    sync(settings, engine)
    assert len(receiver.bodies) == 1
    sync(settings, engine)
    assert len(receiver.bodies) == 1, "nothing changed and the status is the same: no alert"
    sim.faults.persist(2, Fault.html())
    sync(settings, engine)
    assert [b["status"] for b in receiver.bodies] == ["ok", "partial"]
    assert receiver.bodies[-1]["previous_status"] == "ok"
    sim.faults.persist(2, None)
    sim.catalog.put({**sim.catalog.get(3), "name": "Renamed [/bold] <https://evil.example|click>"})  # type: ignore[dict-item]
    sync(settings, engine)
    last = receiver.bodies[-1]
    assert (last["status"], last["counts"]["changed"]) == ("ok", 1)
    assert last["changes"] == [
        {
            "flow_id": 3,
            "name": "Renamed [/bold] <https://evil.example|click>",
            "event": "changed",
            "values": [
                {
                    "field": "name",
                    "old": last["changes"][0]["values"][0]["old"],
                    "new": "Renamed [/bold] <https://evil.example|click>",
                }
            ],
        }
    ]
    assert "<https://evil.example|click>" not in last["text"], "a chat must not turn vendor text into a link"
    assert "&lt;https://evil.example|click&gt;" in last["text"]
    for body in receiver.bodies:
        assert sim.config.api_secret not in json.dumps(body)


def test_a_first_load_alert_is_capped_and_counts_what_it_left_out(
    engine: Engine, sim: SimulatorHandle, database_url: str, receiver: Receiver
) -> None:
    """Twenty created flows: twenty listed at most, the rest counted, the text says how to see them."""
    settings = settings_for(sim, database_url, "1-20", notify_url=receiver.url)
    report = sync(settings, engine)
    (body,) = receiver.bodies
    assert body["run_id"] == report.run_id
    assert body["counts"] == {
        "requested": 20,
        "created": 20,
        "changed": 0,
        "unchanged": 0,
        "deleted": 0,
        "failed": 0,
    }
    assert len(body["changes"]) + body["changes_left_out"] == 20
    assert (
        body["text"].splitlines()[0]
        == f"flowsync run {report.run_id} ok: 20 created, 0 changed, 0 deleted, 0 failed"
    )


@pytest.mark.parametrize(
    ("statuses", "delivered", "attempts"),
    [
        pytest.param([500, 503], True, 3, id="5xx then success"),
        pytest.param([429], True, 2, id="429 then success"),
        pytest.param([404], False, 1, id="404 is not retried"),
        pytest.param([500] * 1000, False, None, id="500 until the budget runs out"),
    ],
)
def test_delivery_retries_what_is_worth_retrying_within_its_budget(
    receiver: Receiver, statuses: list[int], delivered: bool, attempts: int | None
) -> None:
    """5xx and 429 are retried with backoff; another refusal is final; the budget bounds the whole."""
    receiver.statuses = list(statuses)
    clock = FakeClock()
    result = deliver(
        receiver.url, {"text": "hi"}, budget_s=30, attempt_timeout_s=10, sleep=clock.sleep, clock=clock
    )
    assert result.delivered is delivered
    if attempts is not None:
        assert result.attempts == attempts
    else:
        assert result.attempts == len(clock.sleeps) + 1 >= 4, "retried until the budget ran out"
        assert sum(clock.sleeps[:-1]) < 30 <= sum(clock.sleeps)
        assert result.error == "HTTP 500"


def test_a_receiver_that_is_down_or_never_answers_fails_within_the_budget(receiver: Receiver) -> None:
    """Connection refused, or an answer that never comes: retried, then a failed delivery, never a raise."""
    clock = FakeClock()
    down = deliver("http://127.0.0.1:1/hook", {"text": "hi"}, budget_s=5, sleep=clock.sleep, clock=clock)
    assert (down.delivered, down.attempts) == (False, len(clock.sleeps) + 1)
    assert down.attempts >= 2
    assert "ConnectError" in (down.error or "")
    receiver.hang = threading.Event()
    clock = FakeClock()
    slow = deliver(
        receiver.url, {"text": "hi"}, budget_s=1, attempt_timeout_s=0.2, sleep=clock.sleep, clock=clock
    )
    assert (slow.delivered, slow.attempts) == (False, len(clock.sleeps) + 1)
    assert slow.attempts >= 2
    assert "Timeout" in (slow.error or "")


def test_a_failed_alert_is_logged_without_the_webhook_secret_and_the_sync_is_unharmed(
    engine: Engine, sim: SimulatorHandle, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The run is recorded as it went; the log names the receiver's host, never its secret path."""
    settings = settings_for(sim, database_url, "1-3", notify_url="http://127.0.0.1:1/hooks/T0K3N")
    with caplog.at_level(logging.INFO):
        report = jobs.sync_once(
            settings,
            settings.require_api(),
            engine,
            triggered_by=Trigger.MANUAL,
            backoff=FAST,
            notify_budget_s=0.2,
        )
    assert report.status == "ok"
    failed = [r for r in caplog.records if "change alert" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].getMessage().startswith(f"run {report.run_id}: the change alert failed: ConnectError")
    assert "attempt(s) to http://127.0.0.1:1" in failed[0].getMessage()
    assert "T0K3N" not in caplog.text
    (run,) = run_rows(engine)
    assert (run["status"], run["alert_status"]) == ("ok", "failed"), "recorded, not only logged"
    assert run["alert_error"].startswith("ConnectError")
    assert "http://127.0.0.1:1" in run["alert_error"]
    assert "T0K3N" not in run["alert_error"]


def test_the_outcome_of_each_alert_is_recorded_on_its_run(
    engine: Engine, sim: SimulatorHandle, database_url: str, receiver: Receiver
) -> None:
    """Sent, failed with the receiver's reason, or null when no alert was due; `status` shows a failure."""
    settings = settings_for(sim, database_url, "1-3", notify_url=receiver.url)
    sync(settings, engine)  # first run: an alert, delivered
    sync(settings, engine)  # nothing changed, same status: no alert due
    receiver.statuses = [404]  # a final refusal, not retried
    sim.catalog.put({**sim.catalog.get(2), "name": "renamed"})  # type: ignore[dict-item]
    sync(settings, engine)
    assert [(r["alert_status"], r["alert_error"]) for r in run_rows(engine)] == [
        ("sent", None),
        (None, None),
        ("failed", f"HTTP 404 after 1 attempt(s) to {where(receiver.url)}"),
    ]
    shown = flowsync("status", env=flowsync_env(None, database_url, None))
    assert shown.returncode == 0, shown.stderr
    assert "change alert failed: HTTP 404 after 1 attempt(s)" in shown.stdout
    as_json = json.loads(
        flowsync("status", "--format", "json", env=flowsync_env(None, database_url, None)).stdout
    )
    assert [r["alert_status"] for r in as_json["runs"]] == ["failed", None, "sent"]


def run_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.select(sync_runs).order_by(sync_runs.c.id))]
