"""A wrong API base URL (every request answered HTTP 404) is named as such, not left as N failed flows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync.app import jobs
from sync.app.settings import Settings
from sync.pipeline.loop import RunReport
from sync.simulator import Fault, SimulatorConfig, SimulatorHandle, running_simulator
from sync.store.schema import sync_runs
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger
from tests.conftest import settings_for
from tests.process import flowsync, flowsync_env

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)


def sync(settings: Settings, engine: Engine) -> RunReport:
    return jobs.sync_once(settings, settings.require_api(), engine, triggered_by=Trigger.MANUAL, backoff=FAST)


def stored_message(engine: Engine, run_id: int) -> Any:
    with engine.connect() as connection:
        return connection.scalar(sa.select(sync_runs.c.error_message).where(sync_runs.c.id == run_id))


def without_prefix(sim: SimulatorHandle) -> str:
    """The simulator's address with the documented `/otp` left off, a newcomer's likely mistake."""
    assert sim.base_url.endswith("/otp")
    return sim.base_url.removesuffix("/otp")


@pytest.mark.parametrize("flow_ids", ["1-5", "all"])
def test_a_base_url_without_otp_says_to_check_flowsync_base_url(
    engine: Engine, sim: SimulatorHandle, database_url: str, flow_ids: str
) -> None:
    """Every flow (or the list) answered 404: the run's message, stored and returned, names the setting."""
    settings = settings_for(sim, database_url, flow_ids, base_url=without_prefix(sim))
    report = sync(settings, engine)
    assert report.exit_code == 1
    assert report.error_message is not None
    assert "HTTP 404" in report.error_message
    assert "check the API base URL (FLOWSYNC_BASE_URL)" in report.error_message
    assert "the documented base ends in /otp" in report.error_message
    assert "this one's path is /" in report.error_message
    assert stored_message(engine, report.run_id) == report.error_message
    assert report.status == ("partial" if flow_ids == "1-5" else "failed")


def test_one_missing_flow_is_not_blamed_on_the_base_url(
    engine: Engine, sim: SimulatorHandle, database_url: str
) -> None:
    """A 404 for some flows only is that flow's problem: the run's message stays empty."""
    sim.faults.queue(2, Fault.http(404))
    report = sync(settings_for(sim, database_url, "1-5"), engine)
    assert (report.status, report.counts.failed) == ("partial", 1)
    assert report.error_message is None
    assert stored_message(engine, report.run_id) is None


@pytest.fixture
def sim_elsewhere() -> Iterator[SimulatorHandle]:
    """An API that answers under another path, so a base URL ending in /otp is on the wrong host."""
    with running_simulator(SimulatorConfig(flow_count=5, seed=1, prefix="/v2")) as handle:
        yield handle


def test_a_base_url_with_otp_on_the_wrong_host_asks_about_the_host(
    engine: Engine, sim_elsewhere: SimulatorHandle, database_url: str
) -> None:
    """The path is already the documented one: the hint asks about the host instead."""
    base_url = sim_elsewhere.base_url.removesuffix("/v2") + "/otp"
    report = sync(settings_for(sim_elsewhere, database_url, "1-5", base_url=base_url), engine)
    assert report.error_message is not None
    assert "its path ends in /otp, so is its host the API's?" in report.error_message


@pytest.mark.parametrize(
    ("flag", "named"),
    [(False, "(FLOWSYNC_BASE_URL)"), (True, "(--base-url, or FLOWSYNC_BASE_URL)")],
)
def test_the_command_line_shows_the_hint_even_when_quiet(
    sim: SimulatorHandle, tmp_path: Any, flag: bool, named: str
) -> None:
    """`flowsync -q sync` exits 1 and its warning names where the wrong URL came from."""
    database_url = f"sqlite:///{tmp_path / 'flowsync.db'}"
    env = flowsync_env(sim, database_url, "1-3")
    assert flowsync("db", "upgrade", env=env).returncode == 0
    if flag:
        result = flowsync("-q", "sync", "--base-url", without_prefix(sim), env=env)
    else:
        result = flowsync("-q", "sync", env={**env, "FLOWSYNC_BASE_URL": without_prefix(sim)})
    assert result.returncode == 1
    assert f"every flow failed with HTTP 404 Not Found; check the API base URL {named}" in result.stderr
