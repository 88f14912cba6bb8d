"""The soak scenario: many runs against a simulator failing in every way at once, then an audit.

After the runs, three things must hold, and every difference is counted as a mismatch:

1. the database equals what the simulator last served with success, for every flow;
2. replaying `flow_history` from nothing gives exactly the current `flows`/`flow_nodes`, and
   exactly the analyst layer: `flow_versions`, `flow_version_nodes`, `flow_changes` and the
   streak columns of `flows`;
3. every finished run's counts add up, and match the events it wrote;
4. `flowsync verify`'s check finds nothing: the audit chain is whole, every run's
   `history_head` is where the chain stood, and its own replay agrees with every table.

`python -m tests.soak --runs 200 --flows 200` prints the figures quoted in
docs/reliability.md; tests/test_soak.py runs a small version on every backend.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from sync.app import jobs
from sync.app.settings import Settings
from sync.core.chain import ChainHasher
from sync.core.diff import apply_changes
from sync.core.selection import ALL, parse_flow_ids
from sync.core.snapshot import from_json
from sync.simulator import Fault, FaultKind, SimulatorConfig, SimulatorHandle, running_simulator
from sync.simulator.catalog import random_flow
from sync.store import migrate
from sync.store.database import create_engine
from sync.store.schema import flow_history, flows, sync_runs
from sync.store.verify import Verification
from sync.vendor.client import Backoff
from sync.vendor.payload import normalize, parse_flow
from sync.vocabulary import Trigger
from tests.replay import replayed, stored
from tests.tables import stored_snapshots

FAST = Backoff(initial_s=0.001, max_s=0.01, retry_after_cap_s=0.01)

# Every way a single answer can go wrong; delays stay well under the client timeout, so an answer
# the simulator counts as served is always one the client received.
FAULTS = [
    Fault.api("-18"),
    Fault.api("-22"),
    Fault.api("-16"),
    Fault.api("-99"),
    Fault.http(429, retry_after=0),
    Fault.http(500),
    Fault.http(502),
    Fault.http(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
    Fault.http(404),
    Fault.html(),
    Fault.html(503),
    Fault(FaultKind.EMPTY_BODY),
    Fault(FaultKind.TRUNCATED),
    Fault(FaultKind.NOT_OBJECT),
    Fault(FaultKind.WRONG_ID),
    Fault(FaultKind.NULL_DATA),
    Fault(FaultKind.RESET),
    Fault(FaultKind.CLOSE_MID_BODY),
    Fault.delay(0.05),
    Fault.hang(),
    # What no answer may make flowsync read: each is past the caps below, so it is always refused.
    Fault.bomb(16 * 2**20),  # `gzip, gzip`: 16 MiB of spaces in a few hundred bytes
    Fault.oversize(2 * 2**20),  # a valid answer padded to 2 MiB, its length announced
    Fault.endless(),  # spaces after the answer, without end
]
CLIENT_TIMEOUT_S = 1.0
MAX_DETAILS_BYTES = 2**16  # the smallest cap allowed, some 30 times the largest simulated flow
MAX_LISTING_BYTES = 2**20  # some 20 times the soak's largest listing


@dataclass
class SoakReport:
    runs: int = 0
    run_statuses: Counter[str] = field(default_factory=Counter)
    failed_because: Counter[str] = field(default_factory=Counter)
    requests: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    flows_written: int = 0
    events: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"runs: {self.runs} ({_listing(self.run_statuses)})",
            f"failed runs: {_listing(self.failed_because)}",
            f"requests: {sum(self.requests.values())} ({_listing(self.requests)})",
            f"faults injected: {sum(self.faults.values())} ({_listing(self.faults)})",
            f"flows written: {self.flows_written} (events: {_listing(self.events)})",
            f"mismatches: {len(self.mismatches)}",
            f"wall time: {self.seconds:.1f} s",
        ]


def _listing(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {number}" for name, number in sorted(counts.items()))


def soak(database_url: str, *, runs: int, flows_count: int, fault_rate: float, seed: int) -> SoakReport:
    """Run the scenario against a fresh database at `database_url` and audit the result."""
    rng = random.Random(seed)
    engine = create_engine(database_url)
    report = SoakReport()
    started = time.monotonic()
    try:
        migrate.upgrade(engine)
        with running_simulator(SimulatorConfig(flow_count=flows_count, seed=seed)) as sim:
            sim.faults.set_random(fault_rate, FAULTS, seed=seed, on_list=True)
            flapping = _flapping_pairs(sim, rng, count=max(1, flows_count // 20))
            for number in range(runs):
                _between_runs(sim, rng, number, flapping)
                settings = _settings(sim, database_url, all_flows=number % 4 == 3)
                result = jobs.sync_once(
                    settings, settings.require_api(), engine, triggered_by=Trigger.SCHEDULE, backoff=FAST
                )
                report.run_statuses[result.status] += 1
                if result.status == "failed":
                    report.failed_because[(result.error_message or "").split(":")[0]] += 1
                sim.faults.set_account(None)
            report.runs = runs
            report.requests = sim.stats.requests
            report.faults = sim.stats.faults
            report.mismatches += _compare_with_served(engine, sim.stats.served)
        report.mismatches += _replay_history(engine)
        report.mismatches += _replay_analyst_layer(engine)
        report.mismatches += _check_counts(engine)
        report.mismatches += [
            f"verify: {d.table} {d.key}: {d.problem}" for d in Verification(engine, ChainHasher())
        ]
        report.events = _event_counts(engine)
        report.flows_written = sum(n for e, n in report.events.items() if e != "error")
    finally:
        engine.dispose()
    report.seconds = time.monotonic() - started
    return report


def _settings(sim: SimulatorHandle, database_url: str, *, all_flows: bool) -> Settings:
    highest = max([*sim.catalog.ids(), *sim.catalog.deleted_ids()])
    return Settings(
        database_url=database_url,
        base_url=sim.base_url,
        api_key=sim.config.api_key,
        api_secret=SecretStr(sim.config.api_secret),
        flow_ids=ALL if all_flows else parse_flow_ids(f"1-{highest}"),
        concurrency=8,
        timeout_s=CLIENT_TIMEOUT_S,
        retries=2,
        max_details_bytes=MAX_DETAILS_BYTES,
        max_listing_bytes=MAX_LISTING_BYTES,
    )


def _flapping_pairs(sim: SimulatorHandle, rng: random.Random, count: int) -> dict[int, list[dict[str, Any]]]:
    """Flows that switch between two configurations on every run."""
    pairs = {}
    for flow_id in rng.sample(sim.catalog.ids(), count):
        current = sim.catalog.get(flow_id)
        assert current is not None
        pairs[flow_id] = [current, random_flow(flow_id, rng)]
    return pairs


def _between_runs(
    sim: SimulatorHandle, rng: random.Random, number: int, flapping: dict[int, list[dict[str, Any]]]
) -> None:
    """The vendor's account moves on: edits, deletions, returns, new and recreated flows, flapping."""
    sim.catalog.evolve(rng, change=0.1, delete=0.03, restore=0.3)
    if number % 5 == 4:
        sim.catalog.add(2, rng)
    for flow_id in rng.sample(sim.catalog.ids(), 1):
        if flow_id not in flapping:  # deleted and recreated under the same ID with a new configuration
            sim.catalog.delete([flow_id])
            sim.catalog.put(random_flow(flow_id, rng))
    for flow_id, pair in flapping.items():
        if sim.catalog.get(flow_id) is not None:
            sim.catalog.put(pair[number % 2])
    if number % 10 == 7:
        sim.faults.set_account(Fault.api(rng.choice(["-1", "-2"])))


def _compare_with_served(engine: sa.Engine, served: dict[int, dict[str, Any] | None]) -> list[str]:
    problems = []
    with engine.connect() as connection:
        stored = {row.flow_id: row for row in connection.execute(sa.select(flows))}
        snapshots = stored_snapshots(connection)
        for flow_id, flow in sorted(served.items()):
            row = stored.get(flow_id)
            if flow is None:
                if row is not None and row.sync_state != "deleted":
                    problems.append(f"flow {flow_id}: served as gone, stored as {row.sync_state}")
                continue
            expected = normalize(parse_flow(flow))
            if row is None:
                problems.append(f"flow {flow_id}: served but not stored")
            elif row.sync_state == "deleted":
                problems.append(f"flow {flow_id}: served last, stored as deleted")
            elif snapshots[flow_id] != expected.as_json() or row.content_hash != expected.content_hash:
                problems.append(f"flow {flow_id}: stored configuration differs from the last one served")
    return problems


def _replay_history(engine: sa.Engine) -> list[str]:
    """Rebuild every flow from its events alone and compare with the current tables."""
    problems = []
    state: dict[int, tuple[dict[str, Any] | None, bool]] = {}  # flow_id -> (snapshot, deleted)
    with engine.connect() as connection:
        for event in connection.execute(sa.select(flow_history).order_by(flow_history.c.id)):
            if event.flow_id is None or event.event == "error":
                continue
            previous, _ = state.get(event.flow_id, (None, False))
            if event.event == "created":
                if previous is not None:
                    problems.append(f"flow {event.flow_id}: created twice (event {event.id})")
                state[event.flow_id] = (event.snapshot, False)
            elif event.event in ("changed", "restored"):
                if previous is None:
                    problems.append(f"flow {event.flow_id}: {event.event} before created (event {event.id})")
                    continue
                replayed = apply_changes(from_json(previous), event.changes or []).as_json()
                if replayed != event.snapshot:
                    problems.append(
                        f"flow {event.flow_id}: changes of event {event.id} do not lead to its snapshot"
                    )
                state[event.flow_id] = (event.snapshot, False)
            elif event.event == "deleted":
                state[event.flow_id] = (previous, True)
        stored = {row.flow_id: row for row in connection.execute(sa.select(flows))}
        snapshots = stored_snapshots(connection)
        for flow_id, row in stored.items():
            snapshot, deleted = state.get(flow_id, (None, False))
            if snapshot is None:
                problems.append(f"flow {flow_id}: stored, but history never created it")
            elif snapshot != snapshots[flow_id] or deleted != (row.sync_state == "deleted"):
                problems.append(f"flow {flow_id}: history does not replay to the stored state")
        problems += [f"flow {f}: history has events but no flows row" for f in state.keys() - stored.keys()]
    return problems


def _replay_analyst_layer(engine: sa.Engine) -> list[str]:
    """The analyst tables against an independent replay of `flow_history`, row by row."""
    with engine.connect() as connection:
        expected, actual = replayed(connection), stored(connection)
    problems = []
    for table in ("versions", "version_nodes", "changes"):
        wanted = {tuple(sorted(row.items())) for row in getattr(expected, table)}
        found = {tuple(sorted(row.items())) for row in getattr(actual, table)}
        problems += [f"{table}: missing {dict(row)}" for row in wanted - found]
        problems += [f"{table}: unexpected {dict(row)}" for row in found - wanted]
    problems += [
        f"flow {flow_id}: streak {actual.streaks.get(flow_id)} where history says {streak}"
        for flow_id, streak in expected.streaks.items()
        if actual.streaks.get(flow_id) != streak
    ]
    return problems


def _check_counts(engine: sa.Engine) -> list[str]:
    problems = []
    with engine.connect() as connection:
        events = Counter(
            (row.run_id, row.event, row.flow_id is None)
            for row in connection.execute(
                sa.select(flow_history.c.run_id, flow_history.c.event, flow_history.c.flow_id)
            )
        )
        for run in connection.execute(sa.select(sync_runs)):
            if run.status in ("ok", "partial"):
                settled = (
                    run.flows_created
                    + run.flows_changed
                    + run.flows_unchanged
                    + run.flows_deleted
                    + run.flows_failed
                )
                if settled != run.flows_requested:
                    problems.append(f"run {run.id}: counts add up to {settled}, not {run.flows_requested}")
            expected = {
                "created": run.flows_created,
                "changed": run.flows_changed,
                "deleted": run.flows_deleted,
                "error": run.flows_failed,
            }
            actual = {
                "created": events[(run.id, "created", False)],
                "changed": events[(run.id, "changed", False)] + events[(run.id, "restored", False)],
                "deleted": events[(run.id, "deleted", False)],
                "error": events[(run.id, "error", False)],
            }
            if expected != actual:
                problems.append(f"run {run.id}: counts {expected} but events {actual}")
    return problems


def _event_counts(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as connection:
        return Counter(connection.scalars(sa.select(flow_history.c.event)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="an empty database (default: a new SQLite file)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # each partial run would otherwise log its failed flows
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'soak.db'}"
        report = soak(url, runs=args.runs, flows_count=args.flows, fault_rate=args.fault_rate, seed=args.seed)
    print("\n".join(report.lines()))
    for problem in report.mismatches[:20]:
        print("  ", problem)
    raise SystemExit(1 if report.mismatches else 0)


if __name__ == "__main__":
    main()
