"""The same flows loaded by dlt (dlthub): what a data engineer would write instead of flowsync.

    python -m benchmarks.peers.dlt_peer --base-url http://127.0.0.1:PORT/otp \\
        --destination sqlalchemy --credentials sqlite:////tmp/dlt.db --ids 1-10000 \\
        --mode threads --workers 32 --pipelines-dir /tmp/dlt-pipelines

A resource yields the flow IDs; a transformer fetches `/flow/details/{id}` with
signed requests and dlt's parallelism switched on:

- `--mode threads`: a plain function with `parallelized=True`, run on dlt's extract
  thread pool (`extract.workers` threads), one kept-alive `requests.Session` per thread;
- `--mode async`: an `async def` transformer, run on dlt's event loop
  (`extract.max_parallel_items` in flight) over one aiohttp session.

The `flows` table is loaded with `write_disposition="merge"` and
`primary_key="flowId"`; dlt puts the nodes in its nested table `flows__flow`.
Destination `sqlalchemy` is used for SQLite and `postgres` for PostgreSQL. The
script prints one JSON line: flows loaded, seconds per dlt step, configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from sync.core.selection import parse_flow_ids
from sync.vendor import signing

API_KEY, API_SECRET = "demo-key", "demo-secret"
PIPELINE_NAME = "flowsync_bench_dlt"


def signed_headers(api_key: str, api_secret: str) -> dict[str, str]:
    """The vendor's headers for a request now (the same signing as flowsync's, from sync.vendor.signing)."""
    return signing.signed_headers(api_key, SecretStr(api_secret), int(time.time()))


def _flow_from(body: dict[str, Any], flow_id: int) -> dict[str, Any]:
    if body.get("status") != "0" or not isinstance(body.get("data"), dict):
        raise RuntimeError(f"flow {flow_id}: API status {body.get('status')} ({body.get('reason')})")
    return dict(body["data"])


class ThreadFetcher:
    """One kept-alive `requests.Session` per dlt extract thread."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._base_url, self._timeout_s = base_url, timeout_s
        self._local = threading.local()

    def __call__(self, flow_id: int) -> dict[str, Any]:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        response = session.get(
            f"{self._base_url}/flow/details/{flow_id}",
            headers=signed_headers(API_KEY, API_SECRET),
            timeout=self._timeout_s,
        )
        response.raise_for_status()
        return _flow_from(response.json(), flow_id)


class AsyncFetcher:
    """One aiohttp session on dlt's extract event loop, opened with the first request."""

    def __init__(self, base_url: str, timeout_s: float, connections: int) -> None:
        self._base_url, self._timeout_s, self._connections = base_url, timeout_s, connections
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, flow_id: int) -> dict[str, Any]:
        import aiohttp

        if self._session is None:
            self._loop = asyncio.get_running_loop()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            )
        url = f"{self._base_url}/flow/details/{flow_id}"
        async with self._session.get(url, headers=signed_headers(API_KEY, API_SECRET)) as response:
            response.raise_for_status()
            return _flow_from(await response.json(content_type=None), flow_id)

    def close(self) -> None:
        if self._session is not None and self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(timeout=5)


def configure_dlt(args: argparse.Namespace) -> None:
    """dlt reads its settings from the environment; set them before it is imported."""
    settings = {
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "RUNTIME__LOG_LEVEL": "WARNING",
        "DLT_DATA_DIR": str(args.pipelines_dir / "global"),
        "EXTRACT__WORKERS": str(args.workers),
        "EXTRACT__MAX_PARALLEL_ITEMS": str(args.parallel_items or args.workers),
        "NORMALIZE__WORKERS": str(args.normalize_workers),
        "LOAD__WORKERS": str(args.load_workers),
    }
    os.environ.update(settings)


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    configure_dlt(args)
    import dlt

    ids = parse_flow_ids(args.ids)
    fetcher: ThreadFetcher | AsyncFetcher
    if args.mode == "threads":
        fetcher = ThreadFetcher(args.base_url, args.timeout)
    else:
        fetcher = AsyncFetcher(args.base_url, args.timeout, args.parallel_items or args.workers)

    @dlt.resource(name="flow_ids", selected=False)
    def flow_ids() -> Iterator[int]:
        yield from ids

    merge: dict[str, Any] = {"write_disposition": "merge", "primary_key": "flowId"}
    details: Any
    if isinstance(fetcher, ThreadFetcher):
        thread_fetch = fetcher

        @dlt.transformer(data_from=flow_ids, name="flows", parallelized=True, **merge)
        def details(flow_id: int) -> dict[str, Any]:
            return thread_fetch(flow_id)

    else:
        async_fetch = fetcher

        @dlt.transformer(data_from=flow_ids, name="flows", **merge)
        async def details(flow_id: int) -> dict[str, Any]:
            return await async_fetch(flow_id)

    if args.destination == "postgres":
        destination: Any = dlt.destinations.postgres(credentials=args.credentials)
    else:
        destination = dlt.destinations.sqlalchemy(credentials=args.credentials)
    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        pipelines_dir=str(args.pipelines_dir),
        destination=destination,
        dataset_name=args.dataset,
    )
    started = time.perf_counter()
    try:
        pipeline.run(details, loader_file_format=args.file_format or None)
    finally:
        if isinstance(fetcher, AsyncFetcher):
            fetcher.close()
    elapsed = time.perf_counter() - started
    steps = {step.step: step.finished_at - step.started_at for step in pipeline.last_trace.steps}
    row_counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace else {}
    return {
        "flows": len(ids),
        "rows": {table: count for table, count in row_counts.items() if not table.startswith("_dlt")},
        "run_s": elapsed,
        "steps_s": {name: round(delta.total_seconds(), 3) for name, delta in steps.items()},
        "config": {
            "mode": args.mode,
            "workers": args.workers,
            "parallel_items": args.parallel_items or args.workers,
            "normalize_workers": args.normalize_workers,
            "load_workers": args.load_workers,
            "file_format": args.file_format or "default",
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--destination", choices=("sqlalchemy", "postgres"), required=True)
    parser.add_argument("--credentials", required=True, help="SQLAlchemy URL or postgresql:// DSN")
    parser.add_argument("--dataset", default="main", help="dataset (schema); `main` is SQLite's own file")
    parser.add_argument("--ids", default="1-10000", help="flow IDs such as 1-10000")
    parser.add_argument("--mode", choices=("threads", "async"), default="threads")
    parser.add_argument("--workers", type=int, default=32, help="extract threads (threads mode)")
    parser.add_argument("--parallel-items", type=int, default=0, help="items in flight (default: workers)")
    parser.add_argument("--normalize-workers", type=int, default=1)
    parser.add_argument("--load-workers", type=int, default=20)
    parser.add_argument("--file-format", default="", help="loader file format (default: the destination's)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--pipelines-dir", type=Path, required=True)
    parser.add_argument("--warmup", action="store_true", help="only import dlt (fills the bytecode cache)")
    args = parser.parse_args(argv)
    args.base_url = args.base_url.rstrip("/")
    if args.warmup:
        configure_dlt(args)
        import dlt
        import dlt.destinations

        print(json.dumps({"warmup": dlt.__version__, "destinations": len(dir(dlt.destinations))}))
        return
    print(json.dumps(run_pipeline(args)))


if __name__ == "__main__":
    main()
