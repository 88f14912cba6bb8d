"""flowsync's throughput against the network bound and against the tools users would pick instead.

    python -m benchmarks.run --flows 10000 --latency-ms 20 --concurrency 32 --databases sqlite,postgresql
    python -m benchmarks.run --workloads d --memory-flows 100000 --databases sqlite --append

Starts the built-in simulator in a process of its own, then runs every workload
as a separate process and measures it from outside (wall seconds, CPU seconds,
peak RSS; see `benchmarks.measure`):

- a: first load of N flows (`--flow-ids 1-N`) into an empty database;
- b: the same again with nothing changed (must write no row to flow_nodes or flow_history);
- c: again after `--change` of the flows changed (the simulator is restarted with `--mutate`);
- all: `--flow-ids all` at N, first load and unchanged: one `/flow/list` request each;
- d: first load of `--memory-flows` flows, for peak memory.

Peers, each against the same simulator and into an empty database of its own on
the same server: the vendor sample's approach (`benchmarks.peers.vendor_sample`,
measured on `--vendor-flows` flows and extrapolated to N, labelled so) and dlt
(`benchmarks.peers.dlt_peer`, merge on `flowId`, parallel extraction). The
table goes to the terminal and, as markdown with the machine's description, to
`--results` (benchmarks/results.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.databases import KINDS, ScratchDatabases, WriteCounter, count_rows, latest_run
from benchmarks.measure import (
    ChildResult,
    Machine,
    SimulatorProcess,
    describe_machine,
    run_child,
    simulator,
)

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API_KEY, API_SECRET = "demo-key", "demo-secret"
WORKLOADS = ("a", "b", "c", "all", "d")
# An unchanged flow writes to none of these: its nodes, its history, the analyst layer.
WATCHED_TABLES = ("flow_nodes", "flow_history", "flow_versions", "flow_version_nodes", "flow_changes")
WORKLOAD_TITLES = {
    "a": "(a) first load",
    "b": "(b) unchanged",
    "c": "(c) changed",
    "all-a": "all: first load",
    "all-b": "all: unchanged",
    "d": "(d) first load",
    "all-d": "(d) all: first load",
}


@dataclass
class Row:
    """One measured (or extrapolated) run of one tool."""

    tool: str
    database: str
    workload: str
    flows: int
    latency_ms: float
    concurrency: int  # the reference concurrency of the network bound
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    requests: int
    sim_cpu_s: float
    other_cpu_s: float
    inner_s: float | None = None  # the tool's own figure: flowsync's run, dlt's pipeline, the vendor loop
    extrapolated_from: int | None = None
    writes: int | None = None  # rows written to flow_nodes and flow_history, where counted
    check: str = ""
    ok: bool = True
    round: int = 1

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        """What makes rows of different rounds the same measurement."""
        return (self.tool, self.database, self.workload, self.flows, self.concurrency)

    @property
    def bound_s(self) -> float:
        """`N x latency / concurrency`; a listing is a single request."""
        if self.workload.startswith("all"):
            return self.latency_ms / 1000
        return self.flows * self.latency_ms / 1000 / self.concurrency

    @property
    def ratio(self) -> float:
        return self.wall_s / self.bound_s if self.bound_s else float("nan")

    @property
    def cpu_ms_per_flow(self) -> float:
        return 1000 * self.cpu_s / self.flows

    @property
    def other_load(self) -> float:
        """Cores kept busy by other processes on the machine meanwhile."""
        return self.other_cpu_s / self.wall_s if self.wall_s else 0.0


@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    env: dict[str, str]
    console: Console
    rows: list[Row] = field(default_factory=list)
    sweep: list[Row] = field(default_factory=list)
    dlt_best: str = ""
    capacity: dict[str, float] = field(default_factory=dict)
    counter: int = 0
    round: int = 1

    @property
    def reported(self) -> list[Row]:
        """One row per measurement: the round with the median wall time (every row after one round)."""
        groups: dict[tuple[str, str, str, int, int], list[Row]] = {}
        for row in self.rows:
            groups.setdefault(row.key, []).append(row)
        return [sorted(group, key=lambda r: r.wall_s)[(len(group) - 1) // 2] for group in groups.values()]

    def child(
        self, command: Sequence[str], name: str, extra_env: dict[str, str] | None = None
    ) -> ChildResult:
        self.counter += 1
        env = {**self.env, **(extra_env or {})}
        return run_child(command, env, self.workdir / "logs", f"{self.counter:03d}-{name}", cwd=self.workdir)

    def record(self, row: Row) -> Row:
        row.round = self.round
        self.rows.append(row)
        flag = "[green]ok[/green]" if row.ok else "[red]CHECK FAILED[/red]"
        extrapolated = f" (extrapolated from {row.extrapolated_from})" if row.extrapolated_from else ""
        self.console.print(
            f"  {row.tool:<28} {row.database:<10} {WORKLOAD_TITLES.get(row.workload, row.workload):<16} "
            f"{row.wall_s:8.2f} s wall {row.cpu_s:7.2f} s CPU {row.peak_rss_mib:6.0f} MiB "
            f"{row.ratio:6.2f}x bound{extrapolated}  {flag} {row.check}"
        )
        return row


def child_env(pycache: Path) -> dict[str, str]:
    """The environment of every measured process: no inherited FLOWSYNC_ settings, bytecode cached."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSYNC_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed flowsync has compiled bytecode
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def _measured(
    ctx: Context,
    sim: SimulatorProcess,
    command: Sequence[str],
    name: str,
    extra_env: dict[str, str] | None = None,
) -> tuple[ChildResult, int, float, float]:
    """Run one measured child; returns it with the simulator's request count, its CPU, and others' CPU."""
    before = sim.stats()
    result = ctx.child(command, name, extra_env)
    after = sim.stats()
    requests = sum(after["requests"].values()) - sum(before["requests"].values())
    sim_cpu = after["cpu_s"] - before["cpu_s"]
    other = max(0.0, result.machine_busy_s - result.cpu_s - sim_cpu)
    return result, requests, sim_cpu, other


def _failed_output(result: ChildResult) -> str:
    """The end of what a failed process said, on one line."""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return f"exit {result.returncode}: {' / '.join(lines[-3:])[-300:]}"


# flowsync ----------------------------------------------------------------------------------------


def flowsync_env(sim: SimulatorProcess, url: str, ids: str, concurrency: int) -> dict[str, str]:
    return {
        "FLOWSYNC_DATABASE_URL": url,
        "FLOWSYNC_BASE_URL": sim.base_url,
        "FLOWSYNC_API_KEY": API_KEY,
        "FLOWSYNC_API_SECRET": API_SECRET,
        "FLOWSYNC_FLOW_IDS": ids,
        "FLOWSYNC_CONCURRENCY": str(concurrency),
    }


def upgrade(ctx: Context, url: str) -> None:
    result = ctx.child([PYTHON, "-m", "sync", "db", "upgrade"], "upgrade", {"FLOWSYNC_DATABASE_URL": url})
    if result.returncode != 0:
        raise RuntimeError(f"flowsync db upgrade failed: {_failed_output(result)}")


def run_flowsync(
    ctx: Context,
    sim: SimulatorProcess,
    *,
    database: str,
    url: str,
    workload: str,
    flows: int,
    concurrency: int,
    expect: Callable[[dict[str, int]], str | None],
    count_writes: bool = False,
) -> Row:
    ids = "all" if workload.startswith("all") else f"1-{flows}"
    counter = WriteCounter(url, WATCHED_TABLES) if count_writes else None
    if counter:
        counter.start()
    result, requests, sim_cpu, other = _measured(
        ctx,
        sim,
        [PYTHON, "-m", "sync", "sync"],
        f"flowsync-{database}-{workload}",
        flowsync_env(sim, url, ids, concurrency),
    )
    writes = sum(counter.stop().values()) if counter else None
    run = latest_run(url)
    problem = _failed_output(result) if result.returncode != 0 else expect(run.counts)
    if problem is None and writes:
        problem = f"{writes} rows written to {' / '.join(WATCHED_TABLES)}"
    counts = run.counts
    check = problem or ", ".join(f"{counts[k]} {k}" for k in ("created", "changed", "unchanged") if counts[k])
    if writes is not None and problem is None:
        check += f"; {writes} rows written to {'/'.join(WATCHED_TABLES)}"
    return ctx.record(
        Row(
            tool="flowsync",
            database=database,
            workload=workload,
            flows=flows,
            latency_ms=sim.latency_ms,
            concurrency=concurrency,
            wall_s=result.wall_s,
            cpu_s=result.cpu_s,
            peak_rss_mib=result.peak_rss_mib,
            requests=requests,
            sim_cpu_s=sim_cpu,
            other_cpu_s=other,
            inner_s=run.duration_s,
            writes=writes,
            check=check,
            ok=problem is None,
        )
    )


def expect_counts(**wanted: int) -> Callable[[dict[str, int]], str | None]:
    def check(counts: dict[str, int]) -> str | None:
        wrong = {k: counts[k] for k, v in wanted.items() if counts[k] != v}
        return None if not wrong else f"expected {wanted}, got {counts}"

    return check


# peers -------------------------------------------------------------------------------------------


def parse_dlt_config(text: str) -> list[str]:
    """`async/64` or `threads/32[/csv]` as dlt_peer arguments."""
    parts = text.split("/")
    if parts[0] not in ("async", "threads") or len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"a dlt configuration looks like async/64 or threads/32[/FORMAT], not {text!r}")
    arguments = [f"--mode={parts[0]}", f"--workers={parts[1]}"]
    if len(parts) > 2:
        arguments.append(f"--file-format={parts[2]}")
    return arguments


def run_dlt(
    ctx: Context,
    sim: SimulatorProcess,
    dbs: ScratchDatabases,
    *,
    url: str,
    pipelines: Path,
    workload: str,
    flows: int,
    config: str,
    record: bool = True,
) -> Row:
    destination, credentials, dataset = dbs.dlt_target(url)
    command = [
        PYTHON,
        "-m",
        "benchmarks.peers.dlt_peer",
        f"--base-url={sim.base_url}",
        f"--destination={destination}",
        f"--credentials={credentials}",
        f"--dataset={dataset}",
        f"--ids=1-{flows}",
        f"--pipelines-dir={pipelines}",
        *parse_dlt_config(config),
    ]
    result, requests, sim_cpu, other = _measured(
        ctx, sim, command, f"dlt-{dbs.kind}-{workload}-{config.replace('/', '-')}"
    )
    problem: str | None = None
    inner: float | None = None
    steps = ""
    if result.returncode != 0:
        problem = _failed_output(result)
    else:
        figures = result.json_line()
        inner = float(figures["run_s"])
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in figures["steps_s"].items() if k != "run")
        schema = None if dbs.kind == "sqlite" else dataset
        stored = count_rows(url, ["flows"], schema)["flows"]
        if stored != flows:
            problem = f"dlt's flows table holds {stored} rows, expected {flows}"
    row = Row(
        tool=f"dlt {config}",
        database=dbs.kind,
        workload=workload,
        flows=flows,
        latency_ms=sim.latency_ms,
        concurrency=ctx.args.concurrency,
        wall_s=result.wall_s,
        cpu_s=result.cpu_s,
        peak_rss_mib=result.peak_rss_mib,
        requests=requests,
        sim_cpu_s=sim_cpu,
        other_cpu_s=other,
        inner_s=inner,
        check=problem or f"merge on flowId; {steps}",
        ok=problem is None,
    )
    if record:
        return ctx.record(row)
    ctx.console.print(f"  sweep {config:<14} {row.wall_s:8.2f} s wall {row.cpu_s:7.2f} s CPU  {row.check}")
    return row


def run_vendor(
    ctx: Context, sim: SimulatorProcess, dbs: ScratchDatabases, *, url: str, workload: str, flows: int
) -> Row:
    """Measure the vendor sample on `--vendor-flows` flows, extrapolated to `flows` (labelled so)."""
    sample = min(ctx.args.vendor_flows, flows)
    command = [
        PYTHON,
        "-m",
        "benchmarks.peers.vendor_sample",
        f"--base-url={sim.base_url}",
        f"--database-url={url}",
        f"--ids=1-{sample}",
        f"--http={ctx.args.vendor_http}",
    ]
    result, requests, sim_cpu, other = _measured(ctx, sim, command, f"vendor-{dbs.kind}-{workload}")
    problem: str | None = None
    wall, cpu, inner = result.wall_s, result.cpu_s, None
    if result.returncode != 0:
        problem = _failed_output(result)
    else:
        figures = result.json_line()
        scale = flows / sample
        loop_s, loop_cpu_s = float(figures["loop_s"]), float(figures["loop_cpu_s"])
        wall = result.wall_s - loop_s + loop_s * scale
        cpu = result.cpu_s - loop_cpu_s + loop_cpu_s * scale
        inner = loop_s * scale
        stored = count_rows(url, ["flows"])["flows"]
        if stored != sample:
            problem = f"flows holds {stored} rows, expected {sample}"
    return ctx.record(
        Row(
            tool=f"vendor sample ({ctx.args.vendor_http})",
            database=dbs.kind,
            workload=workload,
            flows=flows,
            latency_ms=sim.latency_ms,
            concurrency=ctx.args.concurrency,
            wall_s=wall,
            cpu_s=cpu,
            peak_rss_mib=result.peak_rss_mib,
            requests=round(requests * flows / sample),
            sim_cpu_s=sim_cpu * flows / sample,
            other_cpu_s=other * flows / sample,
            inner_s=inner,
            extrapolated_from=sample if sample != flows else None,
            check=problem or f"measured on flows 1-{sample}: {result.wall_s:.1f} s wall",
            ok=problem is None,
        )
    )


# phases ------------------------------------------------------------------------------------------


def measure_capacity(ctx: Context) -> None:
    """The simulator's own ceiling: requests/s at 0 latency from a separate load process."""
    args = ctx.args
    with simulator(ctx.env, flows=args.flows, latency_ms=0, seed=args.seed, loop=args.simulator_loop) as sim:
        command = [
            PYTHON,
            "-m",
            "benchmarks.load",
            sim.base_url,
            f"--requests={args.capacity_requests}",
            f"--concurrency={args.capacity_concurrency}",
            f"--flows={args.flows}",
        ]
        result, requests, sim_cpu, other = _measured(ctx, sim, command, "capacity")
    if result.returncode != 0:
        raise RuntimeError(f"the load generator failed: {_failed_output(result)}")
    figures = result.json_line()
    needed = args.concurrency / (args.latency_ms / 1000) if args.latency_ms else float("nan")
    ctx.capacity = {
        "requests": requests,
        "achieved_rps": requests / float(figures["wall_s"]),
        "sim_cpu_ms_per_request": 1000 * sim_cpu / requests,
        "sim_capacity_rps": requests / sim_cpu,
        "load_cpu_ms_per_request": 1000 * float(figures["cpu_s"]) / requests,
        "needed_rps": needed,
        "other_load": other / result.wall_s,
    }
    c = ctx.capacity
    ctx.console.print(
        f"  simulator: {c['achieved_rps']:,.0f} requests/s at concurrency {args.capacity_concurrency}; "
        f"{c['sim_cpu_ms_per_request']:.3f} ms of its CPU per request, "
        f"so {c['sim_capacity_rps']:,.0f}/s on one core; the benchmark needs at most {needed:,.0f}/s"
    )


@dataclass
class Suite:
    """Every tool's database of one kind, and the runs against it."""

    ctx: Context
    dbs: ScratchDatabases
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.dbs.kind

    def flowsync(
        self,
        sim: SimulatorProcess,
        workload: str,
        expect: dict[str, int],
        url: str,
        concurrency: int | None = None,
    ) -> Row:
        return run_flowsync(
            self.ctx,
            sim,
            database=self.kind,
            url=url,
            workload=workload,
            flows=self.ctx.args.flows,
            concurrency=concurrency or self.ctx.args.concurrency,
            expect=expect_counts(**expect),
            count_writes=workload in ("b", "all-b"),
        )

    def flowsync_like_dlt(self, sim: SimulatorProcess) -> None:
        """(a) again with as many requests in flight as dlt's configuration, to compare like with like."""
        workers = int(self.ctx.dlt_best.split("/")[1])
        if workers != self.ctx.args.concurrency:
            url = self.dbs.create("flowsync_matched")
            upgrade(self.ctx, url)
            self.flowsync(sim, "a", {"created": self.ctx.args.flows, "failed": 0}, url, concurrency=workers)

    def dlt(self, sim: SimulatorProcess, workload: str) -> None:
        if workload == "a":
            self.urls["dlt"] = self.dbs.create("dlt")
        pipelines = self.ctx.workdir / f"dlt-{self.kind}"
        run_dlt(
            self.ctx,
            sim,
            self.dbs,
            url=self.urls["dlt"],
            pipelines=pipelines,
            workload=workload,
            flows=self.ctx.args.flows,
            config=self.ctx.dlt_best,
        )

    def vendor(self, sim: SimulatorProcess, workload: str) -> None:
        if workload == "a":
            self.urls["vendor"] = self.dbs.create("vendor")
            upgrade(self.ctx, self.urls["vendor"])
        run_vendor(
            self.ctx, sim, self.dbs, url=self.urls["vendor"], workload=workload, flows=self.ctx.args.flows
        )

    def before_changes(self, sim: SimulatorProcess) -> None:
        """a, b and `all` against the unchanged catalog, for flowsync and then each peer."""
        args, n = self.ctx.args, self.ctx.args.flows
        workloads = [w for w in ("a", "b") if w in args.workloads or (w == "a" and "c" in args.workloads)]
        if workloads:
            self.urls["flowsync"] = self.dbs.create("flowsync")
            upgrade(self.ctx, self.urls["flowsync"])
            for workload in workloads:
                expected = {"created": n} if workload == "a" else {"unchanged": n}
                self.flowsync(sim, workload, {**expected, "failed": 0}, self.urls["flowsync"])
        if "all" in args.workloads:
            url = self.dbs.create("flowsync_all")
            upgrade(self.ctx, url)
            for workload, expected in (("all-a", {"created": n}), ("all-b", {"unchanged": n})):
                row = self.flowsync(sim, workload, expected, url)
                if row.requests != 1:
                    row.ok, row.check = False, f"{row.requests} requests, expected 1; {row.check}"
        for peer in args.peers:
            for workload in workloads:
                (self.dlt if peer == "dlt" else self.vendor)(sim, workload)
            if peer == "dlt" and "a" in workloads:
                self.flowsync_like_dlt(sim)

    def after_changes(self, sim: SimulatorProcess, changed: int) -> None:
        """c: the same databases again, against the restarted simulator with `changed` flows changed."""
        n = self.ctx.args.flows
        self.flowsync(
            sim, "c", {"changed": changed, "unchanged": n - changed, "failed": 0}, self.urls["flowsync"]
        )
        for peer in self.ctx.args.peers:
            (self.dlt if peer == "dlt" else self.vendor)(sim, "c")


def run_main_workloads(ctx: Context, stack: ExitStack) -> None:
    """a, b, all (unchanged catalog), then c (restarted simulator with changes), for each database."""
    args = ctx.args
    suites = [
        Suite(
            ctx,
            stack.enter_context(dropping(ScratchDatabases(kind, ctx.workdir, args.postgres_url), args.keep)),
        )
        for kind in args.databases
    ]
    simulator_args: dict[str, Any] = {
        "flows": args.flows,
        "latency_ms": args.latency_ms,
        "seed": args.seed,
        "loop": args.simulator_loop,
        "cwd": ctx.workdir,
    }
    with simulator(ctx.env, mutate=0.0, **simulator_args) as sim:
        ctx.console.print(
            f"[bold]simulator[/bold] {args.flows} flows, {args.latency_ms:g} ms at {sim.base_url}"
        )
        if args.dlt_sweep and "dlt" in args.peers and ctx.round == 1:
            sweep_dlt(ctx, sim, suites[0].dbs)
        for suite in suites:
            ctx.console.print(f"[bold]{suite.kind}[/bold]")
            suite.before_changes(sim)
    if "c" not in args.workloads:
        return
    with simulator(ctx.env, mutate=args.change, **simulator_args) as sim:
        changed = int(sim.stats()["changed"])
        ctx.console.print(f"[bold]simulator restarted[/bold] with {changed} of {args.flows} flows changed")
        for suite in suites:
            ctx.console.print(f"[bold]{suite.kind}[/bold]")
            suite.after_changes(sim, changed)


def sweep_dlt(ctx: Context, sim: SimulatorProcess, dbs: ScratchDatabases) -> None:
    """Workload (a) with each dlt configuration, each into a fresh database; the fastest is used after."""
    ctx.console.print(f"[bold]dlt configurations[/bold] on {dbs.kind}, workload (a)")
    for index, config in enumerate(ctx.args.dlt_sweep):
        url = dbs.create(f"dlt_sweep{index}")
        row = run_dlt(
            ctx,
            sim,
            dbs,
            url=url,
            pipelines=ctx.workdir / f"dlt-sweep{index}",
            workload="a",
            flows=ctx.args.flows,
            config=config,
            record=False,
        )
        ctx.sweep.append(row)
    fastest = min((row for row in ctx.sweep if row.ok), key=lambda row: row.wall_s, default=None)
    if fastest is not None:
        ctx.dlt_best = fastest.tool.removeprefix("dlt ")
        ctx.console.print(f"  fastest: {ctx.dlt_best}")


def run_memory(ctx: Context, stack: ExitStack) -> None:
    """(d): first loads of N and of `--memory-flows` flows from the same simulator, for peak memory."""
    args = ctx.args
    n = args.memory_flows
    sizes = sorted({min(args.flows, n), n})
    with simulator(
        ctx.env,
        flows=n,
        latency_ms=args.memory_latency_ms,
        seed=args.seed,
        loop=args.simulator_loop,
        cwd=ctx.workdir,
    ) as sim:
        ctx.console.print(f"[bold]simulator[/bold] {n} flows, {args.memory_latency_ms:g} ms (memory)")
        for kind in args.memory_databases:
            dbs = stack.enter_context(
                dropping(ScratchDatabases(kind, ctx.workdir, args.postgres_url), args.keep)
            )
            # Explicit IDs at each size, then `all` mode at the largest (compare with `all` at N above).
            runs = [("d", size, f"flowsync_memory{size}") for size in sizes] + [
                ("all-d", n, "flowsync_memory_all")
            ]
            for workload, size, tag in runs:
                url = dbs.create(tag)
                upgrade(ctx, url)
                run_flowsync(
                    ctx,
                    sim,
                    database=kind,
                    url=url,
                    workload=workload,
                    flows=size,
                    concurrency=args.memory_concurrency,
                    expect=expect_counts(created=size, failed=0),
                )


@contextmanager
def dropping(dbs: ScratchDatabases, keep: bool) -> Iterator[ScratchDatabases]:
    """Drop every database `dbs` made when the block ends, unless asked to keep them."""
    try:
        yield dbs
    finally:
        if not keep:
            dbs.drop_all()


def warm_up(ctx: Context) -> None:
    """Fill the bytecode cache so no measured process pays for compiling its imports."""
    pipelines = ctx.workdir / "dlt-warmup"
    for command in (
        [PYTHON, "-m", "sync", "--version"],
        [PYTHON, "-m", "benchmarks.simulator_process", "--help"],
        [PYTHON, "-m", "benchmarks.load", "--help"],
        [PYTHON, "-m", "benchmarks.peers.vendor_sample", "--help"],
        [PYTHON, "-c", "import sync.cli.commands, sync.app.jobs, sync.store.migrate, psycopg, requests"],
    ):
        ctx.child(command, "warmup")
    if "dlt" in ctx.args.peers:
        result = ctx.child(
            [
                PYTHON,
                "-m",
                "benchmarks.peers.dlt_peer",
                "--warmup",
                "--base-url=x",
                "--destination=postgres",
                "--credentials=x",
                f"--pipelines-dir={pipelines}",
            ],
            "warmup-dlt",
        )
        if result.returncode != 0:
            raise RuntimeError(f"dlt is not usable (pip install 'flowsync[bench]'): {_failed_output(result)}")


# report ------------------------------------------------------------------------------------------

COLUMNS = (
    "tool",
    "database",
    "workload",
    "N",
    "bound in flight",
    "wall s",
    "CPU s",
    "CPU ms/flow",
    "peak MiB",
    "flows/s",
    "requests/s",
    "bound s",
    "x bound",
    "other load",
    "check",
)


def row_cells(row: Row) -> list[str]:
    extrapolated = f" *extrapolated from {row.extrapolated_from}*" if row.extrapolated_from else ""
    return [
        row.tool,
        row.database,
        WORKLOAD_TITLES.get(row.workload, row.workload),
        f"{row.flows:,}",
        str(row.concurrency),
        f"{row.wall_s:.2f}{extrapolated}",
        f"{row.cpu_s:.2f}",
        f"{row.cpu_ms_per_flow:.3f}",
        f"{row.peak_rss_mib:.0f}",
        f"{row.flows / row.wall_s:,.0f}",
        f"{row.requests / row.wall_s:,.1f}",
        f"{row.bound_s:.2f}",
        f"{row.ratio:.2f}",
        f"{row.other_load:.2f}",
        ("" if row.ok else "FAILED: ") + row.check,
    ]


SPEEDUP_COLUMNS = ("database", "workload", "flowsync concurrency", "flowsync s", "peer", "peer s", "speed-up")


def dlt_workers(row: Row) -> int:
    """How many requests a dlt row kept in flight (`dlt async/64` -> 64)."""
    parts = row.tool.removeprefix("dlt ").split("/")
    return int(parts[1]) if row.tool.startswith("dlt ") and len(parts) > 1 else 0


def speedups(rows: Sequence[Row], reference_concurrency: int, sweep: Sequence[Row] = ()) -> list[list[str]]:
    """flowsync's wall time against each peer's, per database and workload.

    Against the vendor sample at the reference concurrency; against dlt's best configuration
    at every concurrency flowsync ran at; and against the swept dlt configuration that keeps as
    many requests in flight as flowsync, where there is one.
    """
    table = []
    for fs in (r for r in rows if r.tool == "flowsync" and r.workload in ("a", "b", "c")):
        peers = [
            r
            for r in rows
            if r.tool != "flowsync"
            and (r.database, r.workload) == (fs.database, fs.workload)
            and (fs.concurrency == reference_concurrency or r.tool.startswith("dlt"))
        ]
        best = {r.tool for r in peers}
        peers += [
            r
            for r in sweep
            if r.tool not in best
            and (r.database, r.workload) == (fs.database, fs.workload)
            and dlt_workers(r) == fs.concurrency
        ]
        for peer in peers:
            label = " (extrapolated)" if peer.extrapolated_from else ""
            table.append(
                [
                    fs.database,
                    WORKLOAD_TITLES[fs.workload],
                    str(fs.concurrency),
                    f"{fs.wall_s:.2f}",
                    peer.tool,
                    f"{peer.wall_s:.2f}{label}",
                    f"{peer.wall_s / fs.wall_s:.2f}x",
                ]
            )
    return table


def targets(ctx: Context) -> list[list[str]]:
    """The issue's targets, each with the figure reached and whether it is met."""
    rows = ctx.reported
    out: list[list[str]] = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for fs in (r for r in rows if r.tool == "flowsync" and r.workload in ("a", "c")):
        title = f"{WORKLOAD_TITLES[fs.workload]}, {fs.database}, concurrency {fs.concurrency}"
        if fs.concurrency == ctx.args.concurrency:
            bound = f"within 1.3x of the network bound at concurrency {fs.concurrency}"
            out.append([title, bound, f"{fs.ratio:.2f}x", verdict(fs.ratio <= 1.3)])
        for peer in (r for r in rows if (r.database, r.workload) == (fs.database, fs.workload)):
            if peer.tool.startswith("dlt"):
                speedup = peer.wall_s / fs.wall_s
                out.append([title, f"faster than {peer.tool}", f"{speedup:.2f}x", verdict(speedup > 1)])
            elif peer.tool.startswith("vendor") and fs.concurrency == ctx.args.concurrency:
                speedup = peer.wall_s / fs.wall_s
                out.append(
                    [
                        title,
                        "more than 20x faster than the vendor sample",
                        f"{speedup:.1f}x",
                        verdict(speedup > 20),
                    ]
                )
    for fs in (r for r in rows if r.tool == "flowsync" and r.workload == "b"):
        title = f"{WORKLOAD_TITLES['b']}, {fs.database}"
        out.append(
            [
                title,
                f"zero rows written to {', '.join(WATCHED_TABLES)}",
                str(fs.writes),
                verdict(fs.writes == 0),
            ]
        )
        out.append(
            [
                title,
                "at most 0.5 ms CPU per flow",
                f"{fs.cpu_ms_per_flow:.3f} ms",
                verdict(fs.cpu_ms_per_flow <= 0.5),
            ]
        )
    for fs in (r for r in rows if r.tool == "flowsync" and r.workload.startswith("all")):
        title = f"{WORKLOAD_TITLES[fs.workload]}, {fs.database}"
        out.append(
            [
                title,
                "one request for every flow",
                f"{fs.requests} request(s), {fs.wall_s:.2f} s",
                verdict(fs.requests == 1),
            ]
        )
    for fs in (r for r in rows if r.tool == "flowsync" and r.workload in ("d", "all-d")):
        title = f"{WORKLOAD_TITLES[fs.workload]} N={fs.flows:,}, {fs.database}"
        out.append(
            [title, "peak memory under 150 MiB", f"{fs.peak_rss_mib:.0f} MiB", verdict(fs.peak_rss_mib < 150)]
        )
        like = ("d",) if fs.workload == "d" else ("all-a", "all-d")
        small = [
            r
            for r in rows
            if r.tool == "flowsync"
            and r.workload in like
            and r.database == fs.database
            and r.flows < fs.flows
        ]
        if small:
            growth = fs.peak_rss_mib / small[0].peak_rss_mib
            out.append(
                [title, f"flat in N (vs N={small[0].flows:,})", f"{growth:.2f}x", verdict(growth <= 1.15)]
            )
    if ctx.capacity:
        c = ctx.capacity
        headroom = c["sim_capacity_rps"] / c["needed_rps"]
        out.append(
            [
                "simulator",
                "sustains 5x the request rate needed",
                f"{c['sim_capacity_rps']:,.0f}/s per core = {headroom:.1f}x of {c['needed_rps']:,.0f}/s",
                verdict(headroom >= 5),
            ]
        )
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def markdown(ctx: Context, machine: Machine, command: str, started: datetime, elapsed_s: float) -> str:
    args = ctx.args
    lines = [
        f"## Run of {started:%Y-%m-%d %H:%M} UTC ({elapsed_s / 60:.1f} min)",
        "",
        f"`{command}`",
        "",
        *[f"- {line}" for line in machine.lines()],
        f"- Simulator: its own process, {args.simulator_loop} event loop; flowsync concurrency "
        f"{args.concurrency}, {args.latency_ms:g} ms simulated latency; the network bound is "
        "N x latency / concurrency (one latency for `all` mode).",
        "- `other load`: cores kept busy by other processes on the machine during the run "
        "(the simulator and the measured tool excluded); 2 cores in all.",
        "",
    ]
    if ctx.capacity:
        c = ctx.capacity
        lines += [
            "### Simulator capacity",
            "",
            f"- {c['requests']:,.0f} requests at concurrency {args.capacity_concurrency}, 0 ms latency, from "
            f"`benchmarks.load` in its own process: {c['achieved_rps']:,.0f} requests/s achieved "
            f"(other load {c['other_load']:.2f} cores).",
            f"- The simulator spent {c['sim_cpu_ms_per_request']:.3f} ms of CPU per request: "
            f"{c['sim_capacity_rps']:,.0f} requests/s on one core; the load generator "
            f"{c['load_cpu_ms_per_request']:.3f} ms.",
            f"- The benchmark needs at most concurrency / latency = {c['needed_rps']:,.0f} requests/s "
            f"(headroom {c['sim_capacity_rps'] / c['needed_rps']:.1f}x).",
            "",
        ]
    if ctx.sweep:
        lines += ["### dlt configurations (workload a, " + ctx.sweep[0].database + ")", ""]
        lines += markdown_table(COLUMNS, [row_cells(row) for row in ctx.sweep])
        lines += ["", f"Fastest, used for the peer rows: `{ctx.dlt_best}`.", ""]
    rounds = max((row.round for row in ctx.rows), default=1)
    median = f", the round with the median wall time of {rounds}" if rounds > 1 else ""
    lines += ["### Results", "", f"One row per tool and workload{median}.", ""]
    lines += markdown_table(COLUMNS, [row_cells(row) for row in ctx.reported])
    ups = speedups(ctx.reported, args.concurrency, ctx.sweep)
    if ups:
        lines += ["", "### flowsync's speed-up over the peers (wall time)", ""]
        lines += markdown_table(SPEEDUP_COLUMNS, ups)
    goals = targets(ctx)
    if goals:
        lines += ["", "### Targets", "", *markdown_table(("where", "target", "reached", "verdict"), goals)]
    if rounds > 1:
        lines += ["", "### Every round", ""]
        lines += markdown_table(("round", *COLUMNS), [[str(r.round), *row_cells(r)] for r in ctx.rows])
    return "\n".join(lines) + "\n"


def print_tables(ctx: Context) -> None:
    table = Table(title="flowsync throughput", show_lines=False)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in ctx.reported:
        table.add_row(*row_cells(row))
    ctx.console.print(table)
    ups = speedups(ctx.reported, ctx.args.concurrency, ctx.sweep)
    if ups:
        table = Table(title="speed-up over the peers (wall time)")
        for column in SPEEDUP_COLUMNS:
            table.add_column(column)
        for cells in ups:
            table.add_row(*cells)
        ctx.console.print(table)
    goals = targets(ctx)
    if goals:
        table = Table(title="targets")
        for column in ("where", "target", "reached", "verdict"):
            table.add_column(column)
        for cells in goals:
            table.add_row(*cells)
        ctx.console.print(table)


# command line ------------------------------------------------------------------------------------


def _list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)} (choose from {', '.join(choices)})"
            )
        return items

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--flows", type=int, default=10_000, help="N for workloads a, b, c and all")
    add("--latency-ms", type=float, default=20.0, help="simulated latency of every answer")
    add("--concurrency", type=int, default=32, help="flowsync's requests in flight (and the bound's)")
    add("--change", type=float, default=0.05, help="share of flows changed for workload c")
    add("--seed", type=int, default=1)
    add("--databases", type=_list(KINDS), default=["sqlite", "postgresql"])
    add("--workloads", type=_list(WORKLOADS), default=["a", "b", "c", "all"])
    add("--peers", type=_list(("dlt", "vendor")), default=["dlt", "vendor"], help="'' for none")
    add("--memory-flows", type=int, default=100_000, help="N for workload d")
    add("--memory-latency-ms", type=float, default=20.0)
    add("--memory-concurrency", type=int, default=64)
    add("--memory-databases", type=_list(KINDS), default=["sqlite"])
    add("--vendor-flows", type=int, default=500, help="the vendor sample is measured on this many flows")
    add("--vendor-http", choices=("requests", "httpx"), default="requests")
    add("--dlt-config", default="async/32", help="dlt mode/workers[/file format] when not sweeping")
    add(
        "--dlt-sweep",
        type=lambda text: [c for c in text.split(",") if c],
        default=[],
        help="dlt configurations to try on workload a first, e.g. threads/32,async/32,async/64",
    )
    add(
        "--rounds",
        type=int,
        default=3,
        help="run workloads a, b, c and all this many times (fresh databases each time); "
        "tables show the round with the median wall time",
    )
    add("--capacity-requests", type=int, default=20_000, help="0 skips the simulator capacity check")
    add("--capacity-concurrency", type=int, default=64)
    add("--simulator-loop", choices=("asyncio", "uvloop"), default="asyncio")
    add(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="administrative URL; bench_* databases are created and dropped there",
    )
    add("--workdir", type=Path, default=None, help="scratch files and logs (default: a new temporary folder)")
    add("--pycache", type=Path, default=Path(tempfile.gettempdir()) / "flowsync-bench-pycache")
    add("--keep", action="store_true", help="keep the scratch databases and the workdir")
    add("--results", type=Path, default=REPO / "benchmarks" / "results.md")
    add("--append", action="store_true", help="add this run to --results instead of replacing it")
    args = parser.parse_args(argv)
    for config in [args.dlt_config, *args.dlt_sweep]:
        parse_dlt_config(config)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=240)
    started, clock = datetime.now(UTC), time.monotonic()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="flowsync-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, workdir, child_env(args.pycache), console, dlt_best=args.dlt_config)
    console.print(f"scratch files and logs in {workdir}")
    postgres = ScratchDatabases("postgresql", workdir, args.postgres_url)
    pg_version = postgres.server_version() if "postgresql" in args.databases + args.memory_databases else None
    machine = describe_machine(pg_version)
    for line in machine.lines():
        console.print(line)
    warm_up(ctx)
    try:
        with ExitStack() as stack:
            if args.capacity_requests:
                measure_capacity(ctx)
            if {"a", "b", "c", "all"} & set(args.workloads):
                for ctx.round in range(1, args.rounds + 1):
                    if args.rounds > 1:
                        console.print(f"[bold]round {ctx.round} of {args.rounds}[/bold]")
                    run_main_workloads(ctx, stack)
                ctx.round = 1
            if "d" in args.workloads:
                run_memory(ctx, stack)
    finally:
        if ctx.rows or ctx.capacity:
            print_tables(ctx)
            command = "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:])
            text = markdown(ctx, machine, command, started, time.monotonic() - clock)
            previous = args.results.read_text() if args.append and args.results.exists() else "# Results\n"
            args.results.write_text(previous.rstrip("\n") + "\n\n" + text)
            console.print(f"results written to {args.results}")
        if not args.keep:  # the databases are gone already; keep only the logs
            for path in workdir.iterdir():
                if path.is_dir() and path.name != "logs":
                    shutil.rmtree(path)
                elif path.is_file():
                    path.unlink()
    console.print(f"logs of every process in {workdir / 'logs'}")


if __name__ == "__main__":
    main()
