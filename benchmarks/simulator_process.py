"""The built-in vendor API simulator in a process of its own, for the benchmarks.

    python -m benchmarks.simulator_process --flows 10000 --latency-ms 20 --seed 1 --mutate 0.05

The catalog is `FlowCatalog.generate(flows, seed)`, then, when `--mutate` is
positive, `mutate(fraction, random.Random(seed + 1))`: a simulator restarted with
the same arguments serves exactly the same flows, so "5% changed" is the same
5% for every tool benchmarked against it.

Once it listens it prints one line, `BASE_URL http://127.0.0.1:PORT/otp`, on
stdout and serves until SIGTERM or SIGINT. Besides the vendor's endpoints it
answers `GET /_bench/stats` with its request and response counters and its own
CPU seconds, so a benchmark can count the requests a tool made and check that
the simulator was never the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import signal
import sys
import time

from aiohttp import web

from sync.simulator import FaultPlan, FlowCatalog, Simulator, SimulatorConfig, SimulatorStats
from sync.simulator.runner import loopback_socket

STATS_PATH = "/_bench/stats"


def build_catalog(flows: int, seed: int, mutate: float) -> tuple[FlowCatalog, list[int]]:
    """The deterministic catalog, and the IDs of the flows `mutate` changed."""
    catalog = FlowCatalog.generate(flows, seed)
    changed = catalog.mutate(mutate, random.Random(seed + 1)) if mutate > 0 else []
    return catalog, changed


def _process_stats() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_kib": float(usage.ru_maxrss),
        "monotonic_s": time.monotonic(),
    }


def bench_app(simulator: Simulator, changed: list[int]) -> web.Application:
    """The simulator's application plus the statistics endpoint."""
    app = simulator.app()

    async def stats(_: web.Request) -> web.Response:
        body = {
            "requests": simulator.stats.requests,
            "responses": simulator.stats.responses,
            "faults": simulator.stats.faults,
            "flows": len(simulator.catalog),
            "changed": len(changed),
            **_process_stats(),
        }
        return web.json_response(body)

    app.router.add_get(STATS_PATH, stats)
    return app


async def serve(config: SimulatorConfig, catalog: FlowCatalog, changed: list[int], port: int) -> None:
    simulator = Simulator(config, catalog, FaultPlan(config.seed), SimulatorStats())
    sock = loopback_socket("127.0.0.1", port)
    runner = web.AppRunner(bench_app(simulator, changed), access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    host, bound_port = sock.getsockname()[:2]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"BASE_URL http://{host}:{bound_port}{config.prefix}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed when ready)")
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mutate", type=float, default=0.0, help="share of flows changed (0.05 = 5%%)")
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--api-secret", default="demo-secret")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop to serve with (uvloop: less CPU per request, if installed)",
    )
    args = parser.parse_args(argv)
    config = SimulatorConfig(
        api_key=args.api_key,
        api_secret=args.api_secret,
        flow_count=args.flows,
        seed=args.seed,
        latency_s=args.latency_ms / 1000,
    )
    catalog, changed = build_catalog(args.flows, args.seed, args.mutate)
    print(f"simulator: {len(catalog)} flows, {len(changed)} changed", file=sys.stderr, flush=True)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(config, catalog, changed, args.port))
    else:
        asyncio.run(serve(config, catalog, changed, args.port))


if __name__ == "__main__":
    main()
