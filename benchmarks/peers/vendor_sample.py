"""The vendor sample's approach in Python: one request at a time, a new connection each, a commit per flow.

    python -m benchmarks.peers.vendor_sample --base-url http://127.0.0.1:PORT/otp \\
        --database-url sqlite:////tmp/vendor.db --ids 1-500 [--http requests|httpx]

This is what the vendor's Java and PHP samples do, turned into a loader: for each
flow ID in turn, a brand-new HTTP client (so a new TCP connection) sends one
signed request, and the answer is written into flowsync's own `flows` and
`flow_nodes` tables (the database must be at flowsync's schema, `flowsync db
upgrade`) in a transaction of its own: select the row, insert or update it,
replace the nodes, commit. It never skips an unchanged flow and keeps no history.

`--http requests` (the default) opens a plain connection per request, as the
Java sample's `HttpURLConnection` does; `--http httpx` uses a new `httpx.Client()`
per request, which also builds a TLS context each time (even for http://). The
script prints one JSON line: flows, wall and CPU seconds of the loop, and seconds per flow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from sync.core.selection import parse_flow_ids
from sync.store.database import create_engine
from sync.store.schema import flow_nodes, flows
from sync.vendor import signing

API_KEY, API_SECRET = "demo-key", "demo-secret"
Fetch = Callable[[str, dict[str, str], float], Any]


def signed_headers() -> dict[str, str]:
    """The vendor's headers for a request now (the same signing as flowsync's, from sync.vendor.signing)."""
    return signing.signed_headers(API_KEY, SecretStr(API_SECRET), int(time.time()))


def fetch_with_requests(url: str, headers: dict[str, str], timeout_s: float) -> Any:
    import requests

    with requests.Session() as session:  # a new session: a new connection, closed afterwards
        response = session.get(url, headers=headers, timeout=timeout_s)
        response.raise_for_status()
        return response.json()


def fetch_with_httpx(url: str, headers: dict[str, str], timeout_s: float) -> Any:
    import httpx

    with httpx.Client(timeout=timeout_s) as client:
        response = client.get(url, headers=headers)
        response.raise_for_status()
        return response.json()


def store_flow(engine: Engine, data: dict[str, Any]) -> None:
    """Insert or update one flow and replace its nodes, in a transaction of its own."""
    now = datetime.now(UTC)
    flow_id = int(data["flowId"])
    nodes = data.get("flow") or []
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    values = {
        "name": data["name"],
        "node_count": len(nodes),
        "content_hash": digest,
        "last_changed_at": now,
        "last_fetched_at": now,
        "sync_state": "ok",
        "last_error": None,
    }
    with engine.begin() as connection:
        exists = connection.scalar(sa.select(flows.c.flow_id).where(flows.c.flow_id == flow_id))
        if exists is None:
            connection.execute(flows.insert().values(flow_id=flow_id, first_seen_at=now, **values))
        else:
            connection.execute(flows.update().where(flows.c.flow_id == flow_id).values(**values))
        connection.execute(flow_nodes.delete().where(flow_nodes.c.flow_id == flow_id))
        for position, node in enumerate(nodes, start=1):
            connection.execute(
                flow_nodes.insert().values(
                    flow_id=flow_id,
                    position=position,
                    waiting_time=node["waitingTime"],
                    status=node["status"],
                    channel=node["channel"],
                    channel_cut=node.get("channelCut", 0),
                )
            )


def run(base_url: str, database_url: str, ids: str, fetch: Fetch, timeout_s: float) -> dict[str, Any]:
    selection = parse_flow_ids(ids)
    engine = create_engine(database_url)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        for flow_id in selection:
            body = fetch(f"{base_url}/flow/details/{flow_id}", signed_headers(), timeout_s)
            if body.get("status") != "0" or not isinstance(body.get("data"), dict):
                raise RuntimeError(f"flow {flow_id}: API status {body.get('status')} ({body.get('reason')})")
            store_flow(engine, body["data"])
    finally:
        engine.dispose()
    loop_s, loop_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "flows": len(selection),
        "loop_s": loop_s,
        "loop_cpu_s": loop_cpu_s,
        "per_flow_s": loop_s / len(selection),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--ids", default="1-500", help="flow IDs such as 1-500")
    parser.add_argument("--http", choices=("requests", "httpx"), default="requests")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    fetch = fetch_with_requests if args.http == "requests" else fetch_with_httpx
    result = run(args.base_url.rstrip("/"), args.database_url, args.ids, fetch, args.timeout)
    print(json.dumps({**result, "http": args.http}))


if __name__ == "__main__":
    main()
