"""`flowsync demo`: a guided tour on the embedded default, with nothing to configure.

It starts the built-in simulator on a free loopback port, creates a SQLite file,
and runs several sync rounds while the simulated vendor changes flows, fails in
the ways real APIs fail, deletes and restores a flow and finally refuses the
account, so every event type shows up in the status and history printed at the end.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.text import Text

from sync.app import jobs
from sync.app.settings import Settings
from sync.cli.render import flows_table, history_table, runs_table, shown
from sync.cli.streaks import group_streaks
from sync.core.selection import ALL, parse_flow_ids
from sync.errors import FlowsyncError
from sync.simulator import Fault, FaultKind, SimulatorConfig, SimulatorHandle, running_simulator
from sync.store import migrate, reports
from sync.store.database import create_engine
from sync.vendor.client import Backoff
from sync.vocabulary import Trigger

DB_NAME = "flowsync-demo.db"
# Short waits keep the tour quick; a real deployment uses the defaults.
DEMO_BACKOFF = Backoff(initial_s=0.05, max_s=0.2, retry_after_cap_s=0.5)


@dataclass(frozen=True)
class Round:
    """One round of the tour: what the simulated vendor does before the sync, and how to say it.

    `prepare` returns the flows it changed, which `story` names where it says `{changed}`: the
    simulator picks them, so the words come from what it did.
    """

    story: str
    prepare: Callable[[SimulatorHandle], list[int]]
    all_flows: bool = False

    def tell(self, changed: list[int]) -> str:
        return self.story.format(changed=_flows(changed))


def _flows(ids: list[int]) -> str:
    """`flow 2 changes`, `flows 1 and 8 change`, `flows 1, 3 and 8 change`, `no other flow changes`."""
    if not ids:
        return "no other flow changes"
    if len(ids) == 1:
        return f"flow {ids[0]} changes"
    names = ", ".join(str(flow_id) for flow_id in ids[:-1])
    return f"flows {names} and {ids[-1]} change"


def _nothing(_: SimulatorHandle) -> list[int]:
    return []


def _changes_and_faults(sim: SimulatorHandle) -> list[int]:
    sim.faults.queue(3, Fault.http(503), Fault.http(503))
    sim.faults.queue(5, Fault.html())
    sim.faults.queue(1, Fault.api("-16"))
    return sim.catalog.mutate(0.3, random.Random(2))


def _delete_flow_4(sim: SimulatorHandle) -> list[int]:
    sim.catalog.delete([4])
    sim.faults.persist(4, Fault(FaultKind.NULL_DATA))
    return sim.catalog.mutate(0.2, random.Random(3))


def _restore_flow_4(sim: SimulatorHandle) -> list[int]:
    sim.faults.persist(4, None)
    sim.catalog.restore([4])
    return []


def _refuse_account(sim: SimulatorHandle) -> list[int]:
    sim.faults.set_account(Fault.api("-2"))
    return []


def _list_without_flow_6(sim: SimulatorHandle) -> list[int]:
    sim.faults.set_account(None)
    sim.catalog.delete([6])
    return []


ROUNDS = (
    Round(
        "first sync of flows 1-9: flows 1-8 are new; flow 9 does not exist (-22), in this round and "
        "every round that asks for it",
        _nothing,
    ),
    Round(
        "{changed}; flow 3 answers HTTP 503 twice (retried, then fetched); flow 5 sends an HTML error "
        "page (recorded as an error, its stored configuration kept); flow 1 is refused with -16 once "
        "(re-signed with the server's clock, then fetched)",
        _changes_and_faults,
    ),
    Round("flow 4 is deleted (the API answers data: null); {changed}", _delete_flow_4),
    Round("flow 4 is back, as it was before (restored, which counts as changed)", _restore_flow_4),
    Round("the API refuses the account (-2): the run stops at once, before any flow", _refuse_account),
    Round(
        "the account is allowed again; every flow through one /flow/list request (all mode): flow 6 is "
        "no longer listed (deleted), and flow 9, never listed, is not asked for",
        _list_without_flow_6,
        True,
    ),
)


def run_demo(directory: Path, console: Console) -> None:
    """Run the tour into `directory/flowsync-demo.db` (recreated) and print what was recorded."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / DB_NAME
    for leftover in (database, *(database.with_name(DB_NAME + s) for s in ("-wal", "-shm", ".lock"))):
        leftover.unlink(missing_ok=True)
    config = SimulatorConfig(flow_count=8, seed=7, latency_s=0.005)
    with running_simulator(config) as sim:
        console.print(
            Text.assemble(
                ("flowsync demo", "bold"), f": simulated vendor API at {sim.base_url}, database {database}"
            )
        )
        settings = Settings(
            database_url=f"sqlite:///{database}",
            base_url=sim.base_url,
            api_key=config.api_key,
            api_secret=config.api_secret,
            flow_ids=parse_flow_ids("1-9"),
            concurrency=4,
            timeout_s=2,
            retries=2,
        )
        api = settings.require_api()
        engine = create_engine(settings.database_url)
        try:
            migrate.upgrade(engine)
            for number, round_ in enumerate(ROUNDS, start=1):
                console.rule(f"round {number}")
                console.print(round_.tell(round_.prepare(sim)))
                round_api = replace(api, flow_ids=ALL) if round_.all_flows else api
                try:
                    report = jobs.sync_once(
                        settings, round_api, engine, triggered_by=Trigger.DEMO, backoff=DEMO_BACKOFF
                    )
                except FlowsyncError as exc:
                    console.print(Text.assemble(("run not started:", "red"), " ", shown(exc)))
                    continue
                c = report.counts
                console.print(
                    Text.assemble(
                        f"run {report.run_id}: ",
                        (report.status, "bold"),
                        f" (exit code {report.exit_code}) - {c.created} created, {c.changed} changed, "
                        f"{c.unchanged} unchanged, {c.deleted} deleted, {c.failed} failed",
                        shown(f" - {report.error_message}" if report.error_message else ""),
                    )
                )
            console.rule("flowsync status")
            status = reports.status(engine)
            console.print(runs_table(status))
            console.print(flows_table(status))
            console.rule("flowsync history")
            console.print(history_table(group_streaks(reports.history_pages(engine), None)))
        finally:
            engine.dispose()
    console.print(
        f"\nThe database is {database}: query it with `sqlite3 {database}`, or run "
        f"`flowsync status --database-url sqlite:///{database}`.",
        markup=False,
    )
