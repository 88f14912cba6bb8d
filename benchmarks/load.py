"""A lean load generator for the simulator: signed `/flow/details` GETs from one aiohttp session.

    python -m benchmarks.load BASE_URL --requests 20000 --concurrency 64 [--flows 10000]

Run it in a process of its own: it prints one JSON line with the requests sent,
the seconds taken and this process's CPU seconds, so the caller can tell whether
the simulator or this client was the limit. Headers are signed once per second,
as cheaply as a client can, so nearly all the CPU it spends is aiohttp's.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time

import aiohttp


class Signer:
    """The vendor's headers, re-signed only when the second changes."""

    def __init__(self, api_key: str, api_secret: str) -> None:
        self._key, self._secret = api_key, api_secret
        self._second = -1
        self._headers: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        second = int(time.time())
        if second != self._second:
            digest = hashlib.md5(f"{self._key}{self._secret}{second}".encode(), usedforsecurity=False)
            self._second = second
            self._headers = {"Api-Key": self._key, "Timestamp": str(second), "Sign": digest.hexdigest()}
        return self._headers


async def hammer(
    base_url: str, signer: Signer, *, requests: int, concurrency: int, flows: int
) -> dict[str, float]:
    """Send `requests` GETs, `concurrency` at a time over kept-alive connections."""
    ids = iter(range(requests))
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for i in ids:
            async with session.get(f"{base_url}/flow/details/{i % flows + 1}", headers=signer.headers()) as r:
                body = await r.read()
                if r.status != 200 or not body.startswith(b'{"status":"0"'):
                    failures += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall_s, cpu_s = time.perf_counter() - wall_started, time.process_time() - cpu_started
    return {"requests": requests, "failures": failures, "wall_s": wall_s, "cpu_s": cpu_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--flows", type=int, default=10_000, help="IDs cycle through 1..flows")
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--api-secret", default="demo-secret")
    args = parser.parse_args(argv)
    result = asyncio.run(
        hammer(
            args.base_url.rstrip("/"),
            Signer(args.api_key, args.api_secret),
            requests=args.requests,
            concurrency=args.concurrency,
            flows=args.flows,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
