"""`flowsync verify` on a long history: its time and peak memory.

    python -m benchmarks.verify_history --events 1000000 --flows 10000

Builds a history of about `--events` events in a fresh SQLite file (or `--database-url`)
through flowsync's own writer, without HTTP: `--flows` flows, each round changing
nearly every flow (one node's waiting time), failing a few and deleting a few that
come back, restored, the round after. Then runs `flowsync verify --format json` as a
process of its own and measures it from outside (wall seconds, CPU seconds, peak RSS;
`benchmarks.measure.run_child`). Run it once at 100,000 and once at 1,000,000 events:
flat memory means the same peak at both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.measure import run_child
from sync.core.outcomes import Failed, Fetched, FetchResult, Gone, RunCounts
from sync.core.snapshot import FlowSnapshot, NodeSnapshot
from sync.errors import FlowRequestError
from sync.store import migrate, writer
from sync.store.database import create_engine
from sync.vocabulary import RunStatus, Trigger

REPO = Path(__file__).resolve().parent.parent
BATCH = 1000  # results per transaction: bigger than a run's 200, to build the history faster


def result(flow_id: int, round_no: int) -> FetchResult:
    """What the vendor says of a flow in a round: mostly a change, sometimes an error or gone."""
    if (flow_id + round_no) % 23 == 0:
        error = FlowRequestError("API status -22", endpoint="flow/details", flow_id=flow_id, code="-22")
        return Failed(flow_id, error)
    if round_no > 0 and (flow_id + round_no) % 41 == 0:
        return Gone(flow_id)
    nodes = (
        NodeSnapshot(1, 30 + round_no, 1, "sms", 0),
        NodeSnapshot(2, 60 + flow_id % 7, 2, "call", 1),
    )
    return Fetched(flow_id, FlowSnapshot(flow_id, f"Flow {flow_id}", nodes))


def build(database_url: str, events: int, flows: int) -> tuple[int, float]:
    """Write rounds until the history holds about `events` events; how many, and the seconds it took."""
    engine = create_engine(database_url)
    started = time.perf_counter()
    written = 0
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        migrate.upgrade(engine)
        round_no = 0
        while written < events:
            moment += timedelta(minutes=5)
            run_id = writer.start_run(
                engine,
                moment,
                triggered_by=Trigger.SCHEDULE,
                selection=f"1-{flows}",
                requested=flows,
                host="bench",
                pid=os.getpid(),
            )
            counts = RunCounts(requested=flows)
            for first in range(1, flows + 1, BATCH):
                batch = [result(f, round_no) for f in range(first, min(first + BATCH, flows + 1))]
                outcomes = writer.write_results(engine, run_id, moment, batch)
                counts.add(outcomes)
                written += sum(n for outcome, n in outcomes.items() if outcome != "unchanged")
            writer.finish_run(
                engine, run_id, now=moment, status=RunStatus.PARTIAL, counts=counts, error_message=None
            )
            round_no += 1
            print(f"round {round_no}: {written} events", file=sys.stderr, flush=True)
    finally:
        engine.dispose()
    return written, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--database-url", help="an empty database (default: a new SQLite file)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="flowsync-verify-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'history.db'}"
    events, build_s = build(url, args.events, args.flows)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSYNC_")}
    env.update(FLOWSYNC_DATABASE_URL=url, PYTHONPATH=str(REPO))
    measured = run_child(
        [sys.executable, "-m", "sync", "verify", "--format", "json"], env, workdir / "logs", "verify"
    )
    report = json.loads(measured.stdout)
    print(
        json.dumps(
            {
                "events": report["events"],
                "configuration_events": report["configuration_events"],
                "events_written": events,
                "build_s": round(build_s, 1),
                "verify_exit": measured.returncode,
                "verify_ok": report["ok"],
                "verify_wall_s": round(measured.wall_s, 1),
                "verify_cpu_s": round(measured.cpu_s, 1),
                "verify_peak_rss_mib": round(measured.peak_rss_mib, 1),
                "database_mib": round((workdir / "history.db").stat().st_size / 2**20)
                if args.database_url is None
                else None,
            }
        )
    )


if __name__ == "__main__":
    main()
