"""How many signed `/flow/details` requests per second the built-in simulator answers on loopback.

The simulator runs in a background thread of this process, as it does in the tests
and the demo, so client and server share one interpreter (and its GIL): the
figure is a floor for what a sync run can get out of it.

    python benchmarks/simulator_rate.py [--requests 5000] [--concurrency 32] [--flows 100]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time

import aiohttp

from sync.simulator import SimulatorConfig, running_simulator


def signed_headers(config: SimulatorConfig) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hashlib.md5((config.api_key + config.api_secret + timestamp).encode(), usedforsecurity=False)
    return {"Api-Key": config.api_key, "Timestamp": timestamp, "Sign": digest.hexdigest()}


async def hammer(base_url: str, config: SimulatorConfig, requests: int, concurrency: int) -> float:
    """Send `requests` GETs, `concurrency` at a time over kept-alive connections; return the seconds taken."""
    ids = iter(range(requests))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in ids:
            url = f"{base_url}/flow/details/{i % config.flow_count + 1}"
            async with session.get(url, headers=signed_headers(config)) as response:
                body = await response.json(content_type=None)
                assert body["status"] == "0", body

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--flows", type=int, default=100)
    args = parser.parse_args()
    config = SimulatorConfig(flow_count=args.flows)
    with running_simulator(config) as sim:
        elapsed_s = asyncio.run(hammer(sim.base_url, config, args.requests, args.concurrency))
        assert sim.stats.responses == {"0": args.requests}
    print(
        f"{args.requests} requests at concurrency {args.concurrency}: "
        f"{elapsed_s:.2f} s, {args.requests / elapsed_s:,.0f} requests/s"
    )


if __name__ == "__main__":
    main()
