"""Whole processes: the worker under signals, overlapping runs, and a run killed half-way."""

from __future__ import annotations

import json
import random
import signal
import subprocess
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sync.simulator import LIST, Fault, SimulatorConfig, SimulatorHandle, running_simulator
from sync.store.schema import flow_history, flows, sync_runs
from sync.vendor.payload import normalize, parse_flow
from tests.process import COMMAND, flowsync, flowsync_env, start_flowsync, wait_for
from tests.replay import assert_analyst_layer_replays
from tests.tables import assert_every_flow_whole, stored_snapshots

SLOW = Fault.delay(0.15)


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(SimulatorConfig(flow_count=30, seed=3)) as handle:
        yield handle


def runs(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.select(sync_runs).order_by(sync_runs.c.id))]


def flow_count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(flows)) or 0)


def signal_after_a_few_flows(
    engine: sa.Engine, command: str, env: dict[str, str], stop_signal: signal.Signals = signal.SIGTERM
) -> tuple[int, str]:
    """Start `flowsync COMMAND`, send `stop_signal` once it has stored two flows; its exit code and stderr."""
    process = start_flowsync(command, env=env)
    try:
        wait_for(lambda: flow_count(engine) >= 2, f"`flowsync {command}` to store a few flows")
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    return process.returncode, stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_lets_the_worker_finish_the_flows_in_hand(
    engine: sa.Engine, sim: SimulatorHandle, database_url: str, stop_signal: signal.Signals
) -> None:
    """SIGTERM or SIGHUP mid-run: the fetched flows are written, the run is recorded as ended, exit 0."""
    sim.faults.set_random(1.0, [SLOW])
    env = flowsync_env(sim, database_url, "1-30", FLOWSYNC_CONCURRENCY="2", FLOWSYNC_INTERVAL="3600")
    returncode, stderr = signal_after_a_few_flows(engine, "run", env, stop_signal)
    assert returncode == 0, stderr
    (run,) = runs(engine)
    assert run["status"] == "failed"
    assert run["finished_at"] is not None
    assert "stopped by a signal" in str(run["error_message"])
    assert 2 <= flow_count(engine) < 30
    assert_every_flow_whole(engine, sim)
    assert f"received {stop_signal.name}" in stderr


def test_the_worker_keeps_its_schedule_after_a_failed_run(
    engine: sa.Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A run ended by an account error is logged; the next scheduled run succeeds; SIGINT exits 0."""
    sim.faults.set_account(Fault.api("-1"))
    env = flowsync_env(sim, database_url, "1-5", FLOWSYNC_INTERVAL="0.5")
    worker = start_flowsync("run", env=env)
    try:
        wait_for(lambda: any(r["status"] == "failed" for r in runs(engine)), "a failed run")
        sim.faults.set_account(None)
        wait_for(lambda: any(r["status"] == "ok" for r in runs(engine)), "a later successful run")
        worker.send_signal(signal.SIGINT)
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "run 1 failed" in stderr
    assert " ok in " in stderr
    assert all(r["triggered_by"] == "schedule" for r in runs(engine))
    assert all(r["finished_at"] is not None for r in runs(engine))


def test_overlapping_runs_the_later_exits_3(
    engine: sa.Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """While one `sync` runs, a second `sync` (or worker run) on the same database exits 3 at once."""
    sim.faults.set_random(1.0, [Fault.delay(1.0)])  # long enough to outlast two more process starts
    env = flowsync_env(sim, database_url, "1-30", FLOWSYNC_CONCURRENCY="1")
    first = start_flowsync("sync", env=env)
    try:
        wait_for(lambda: bool(runs(engine)), "the first run to start")
        second = flowsync("sync", env=env)
        assert second.returncode == 3, second.stderr
        assert "nothing done" in second.stderr
        once = flowsync("run", "--once", env=env)
        assert once.returncode == 3
        sim.faults.set_random(0.0, [])
        _, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    assert [r["status"] for r in runs(engine)] == ["ok"]


def test_a_killed_run_does_not_block_the_next(
    engine: sa.Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """SIGKILL mid-run leaves whole flows and no lock; the next run completes and closes the dead one."""
    sim.faults.set_random(1.0, [SLOW])
    env = flowsync_env(sim, database_url, "1-30", FLOWSYNC_CONCURRENCY="2")
    doomed = start_flowsync("sync", env=env)
    try:
        wait_for(lambda: flow_count(engine) >= 2, "the run to store a few flows")
        doomed.kill()
        doomed.communicate(timeout=30)
    finally:
        doomed.kill()
    assert_every_flow_whole(engine, sim)
    sim.faults.set_random(0.0, [])
    result = flowsync("sync", env=env)
    assert result.returncode == 0, result.stderr
    killed, completed = runs(engine)
    assert (killed["status"], completed["status"]) == ("failed", "ok")
    with engine.connect() as connection:
        written = connection.scalar(
            sa.select(sa.func.count()).where(
                flow_history.c.run_id == killed["id"], flow_history.c.event == "created"
            )
        )
    assert written is not None
    assert killed["flows_created"] == written >= 2, "a killed run's counts match what it wrote"
    assert flow_count(engine) == 30
    assert_every_flow_whole(engine, sim)


def test_sigkill_at_random_moments_leaves_each_flow_wholly_old_or_new(
    engine: sa.Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """Killed anywhere in a run that changes every flow, each flow is the old or the new one, never a mix."""
    env = flowsync_env(sim, database_url, "1-30", FLOWSYNC_CONCURRENCY="2")
    assert flowsync("sync", env=env).returncode == 0
    rng = random.Random(11)
    for attempt in range(2):
        old = {f: sim.catalog.get(f) for f in sim.catalog.ids()}
        sim.catalog.mutate(1.0, rng)
        new = {f: sim.catalog.get(f) for f in sim.catalog.ids()}
        sim.faults.set_random(1.0, [Fault.delay(0.1)])
        target = rng.randint(1, 20)
        written_before = _events(engine)
        doomed = start_flowsync("sync", env=env)
        try:
            done = written_before + target
            wait_for(lambda: _events(engine) >= done, f"{target} flows written")  # noqa: B023
            doomed.kill()
            doomed.communicate(timeout=30)
        finally:
            doomed.kill()
        sim.faults.set_random(0.0, [])
        with engine.connect() as connection:
            stored_now = stored_snapshots(connection)
        for flow_id, stored in stored_now.items():
            candidates = [normalize(parse_flow(v)).as_json() for v in (old[flow_id], new[flow_id]) if v]
            assert stored in candidates, f"attempt {attempt}: flow {flow_id} is neither old nor new"
        assert_analyst_layer_replays(engine)  # no version or changed value without its event
        checked = flowsync("verify", env=env)  # the chain is whole up to the last committed batch
        assert checked.returncode == 0, checked.stdout
        result = flowsync("sync", env=env)
        assert result.returncode == 0, result.stderr
        assert_every_flow_whole(engine, sim)
        checked = flowsync("verify", "--format", "json", env=env)
        assert checked.returncode == 0, checked.stdout
        with engine.connect() as connection:
            head = connection.scalar(
                sa.select(sync_runs.c.history_head).order_by(sync_runs.c.id.desc()).limit(1)
            )
        assert json.loads(checked.stdout)["head"] == head is not None
    assert [r["status"] for r in runs(engine)] == ["ok", "failed", "ok", "failed", "ok"]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_during_a_sync_records_the_run_and_exits_1(
    engine: sa.Engine, sim: SimulatorHandle, database_url: str, stop_signal: signal.Signals
) -> None:
    """`flowsync sync` stopped by SIGTERM or SIGHUP writes what it fetched, records a failed run, exits 1."""
    sim.faults.set_random(1.0, [SLOW])
    env = flowsync_env(sim, database_url, "1-30", FLOWSYNC_CONCURRENCY="2")
    returncode, stderr = signal_after_a_few_flows(engine, "sync", env, stop_signal)
    assert returncode == 1, stderr
    (recorded,) = runs(engine)
    assert (recorded["status"], recorded["finished_at"] is not None) == ("failed", True)
    assert "stopped by a signal" in str(recorded["error_message"])
    assert_every_flow_whole(engine, sim)


def _events(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(flow_history)) or 0)


@pytest.mark.parametrize(
    "listing_fault",
    [
        pytest.param(Fault.http(503, retry_after=60), id="waiting 60 s to retry a 503"),
        pytest.param(Fault.hang(), id="an answer that never comes"),
    ],
)
def test_sigterm_while_the_flow_list_is_pending_stops_the_worker_at_once(
    engine: sa.Engine, sim: SimulatorHandle, database_url: str, listing_fault: Fault
) -> None:
    """In `all` mode a stop cancels the pending listing and its retry waits, and says so.

    The deadline is far shorter than the 60 s the worker would otherwise wait, and far longer
    than a prompt stop takes on a loaded machine.
    """
    sim.faults.persist(LIST, listing_fault)
    env = flowsync_env(sim, database_url, "all", FLOWSYNC_INTERVAL="3600", FLOWSYNC_TIMEOUT="120")
    process = start_flowsync("run", env=env)
    try:
        wait_for(lambda: sim.stats.requests.get("list", 0) >= 1, "the worker to ask for the flow list")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    (run,) = runs(engine)
    assert run["status"] == "failed"
    assert run["error_message"] == "stopped by a signal before the flow list arrived, so nothing was synced"


def test_a_worker_started_with_sighup_ignored_keeps_ignoring_it(
    engine: sa.Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """Under `nohup`, a hang-up (the terminal closing) does not stop the worker; SIGTERM still does."""
    sim.faults.set_random(1.0, [SLOW])
    env = flowsync_env(sim, database_url, "1-30", FLOWSYNC_CONCURRENCY="2", FLOWSYNC_INTERVAL="3600")
    worker = subprocess.Popen(
        ["nohup", *COMMAND, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: flow_count(engine) >= 1, "the worker to store a flow")
        worker.send_signal(signal.SIGHUP)  # an ignored signal is discarded as it is sent: nothing to wait for
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "received SIGHUP" not in stderr
    assert "received SIGTERM" in stderr
