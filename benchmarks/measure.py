"""Measuring one process from the outside: wall time, CPU seconds, peak memory, and the machine around it.

Every measured tool runs as a child process of its own. `os.wait4` returns the
child's own resource usage (CPU seconds and peak RSS of that process and of the
children it waited for), so nothing else on the machine is counted, the
simulator included. `/proc/stat` tells how busy the machine was meanwhile, so a
result taken while other work ran (other tests, other users) says so.
"""

from __future__ import annotations

import json
import os
import platform
import select
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
SIMULATOR_START_TIMEOUT_S = 120.0


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass(frozen=True)
class ChildResult:
    """How one child process went."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    machine_busy_s: float
    stdout: str
    stderr: str

    def json_line(self) -> dict[str, Any]:
        """The last line of stdout that is a JSON object (peers print their own figures that way)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                parsed: dict[str, Any] = json.loads(line)
                return parsed
        raise ValueError(f"no JSON line in the output:\n{self.stdout[-2000:]}\n{self.stderr[-2000:]}")


def run_child(
    command: Sequence[str], env: Mapping[str, str], log_dir: Path, name: str, cwd: Path | None = None
) -> ChildResult:
    """Run `command` to completion and measure it; stdout and stderr are kept in `log_dir`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        busy_before = machine_busy_s()
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall_s = time.perf_counter() - started
        busy_s = machine_busy_s() - busy_before
        process.returncode = os.waitstatus_to_exitcode(status)
    return ChildResult(
        returncode=process.returncode,
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        machine_busy_s=busy_s,
        stdout=out_path.read_text(),
        stderr=err_path.read_text(),
    )


@dataclass
class SimulatorProcess:
    """A running `benchmarks.simulator_process`, with its statistics endpoint."""

    process: subprocess.Popen[str]
    base_url: str
    flows: int
    latency_ms: float
    mutate: float

    @property
    def stats_url(self) -> str:
        return self.base_url.removesuffix("/otp") + "/_bench/stats"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.stats_url, timeout=10) as response:
            stats: dict[str, Any] = json.load(response)
        return stats


@contextmanager
def simulator(
    env: Mapping[str, str],
    *,
    flows: int,
    latency_ms: float,
    seed: int,
    mutate: float = 0.0,
    loop: str = "asyncio",
    cwd: Path | None = None,
) -> Iterator[SimulatorProcess]:
    """Start the simulator in its own process; stop it (SIGTERM) when the block ends."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.simulator_process",
        f"--flows={flows}",
        f"--latency-ms={latency_ms}",
        f"--seed={seed}",
        f"--mutate={mutate}",
        f"--loop={loop}",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(env), cwd=cwd
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], SIMULATOR_START_TIMEOUT_S)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("BASE_URL "):
            raise RuntimeError(f"the simulator did not start (printed {line!r})")
        yield SimulatorProcess(process, line.split()[1], flows, latency_ms, mutate)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Machine:
    """What the figures were taken on."""

    cpu: str
    cores: int
    memory_gib: float
    system: str
    python: str
    packages: dict[str, str] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        packages = ", ".join(f"{name} {version}" for name, version in self.packages.items())
        databases = ", ".join(f"{name} {version}" for name, version in self.databases.items())
        return [
            f"CPU: {self.cpu}, {self.cores} cores; memory {self.memory_gib:.0f} GiB; {self.system}",
            f"Python {self.python}; {packages}",
            f"Databases: {databases}",
        ]


def describe_machine(postgres_version: str | None) -> Machine:
    databases = {"SQLite": sqlite3.sqlite_version}
    if postgres_version:
        databases["PostgreSQL"] = postgres_version
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        system=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        packages={
            name: _version(name)
            for name in ("flowsync", "aiohttp", "httpx", "sqlalchemy", "psycopg", "dlt", "requests")
        },
        databases=databases,
    )
