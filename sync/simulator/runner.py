"""Running the simulator: in a background thread for tests and the demo, or in the foreground for `fake-api`.

It only ever listens on loopback: it has no TLS and prints its own secret.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

from sync.simulator.catalog import FlowCatalog
from sync.simulator.faults import FaultPlan
from sync.simulator.server import Simulator, SimulatorConfig, SimulatorStats

# Long enough for a delayed answer to finish, short enough that stopping never stalls a test run.
SHUTDOWN_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SimulatorHandle:
    """A running simulator: where it listens, and the live objects that steer and observe it."""

    base_url: str
    config: SimulatorConfig
    catalog: FlowCatalog
    faults: FaultPlan
    stats: SimulatorStats


def loopback_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (port 0: any free one); ValueError unless `host` is loopback."""
    address = "127.0.0.1" if host == "localhost" else host
    try:
        is_loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise ValueError(f"the simulator only listens on loopback, not on {host!r}")
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        # Lets `fake-api` rebind its fixed port right after a restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def _simulator(config: SimulatorConfig, catalog: FlowCatalog | None) -> Simulator:
    catalog = FlowCatalog.generate(config.flow_count, config.seed) if catalog is None else catalog
    return Simulator(config, catalog, FaultPlan(config.seed), SimulatorStats())


def _base_url(sock: socket.socket, prefix: str) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}{prefix}" if ":" in host else f"http://{host}:{port}{prefix}"


async def _start(simulator: Simulator, sock: socket.socket) -> web.AppRunner:
    # handler_cancellation: a client that times out cancels its handler, so hung requests do not pile up.
    runner = web.AppRunner(
        simulator.app(), access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


@contextmanager
def running_simulator(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    catalog: FlowCatalog | None = None,
) -> Iterator[SimulatorHandle]:
    """Serve the simulator from a background thread with its own event loop until the block exits.

    The catalog is generated from `config` unless one is given.
    """
    config = SimulatorConfig() if config is None else config
    sock = loopback_socket(host, port)
    simulator = _simulator(config, catalog)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), name="flowsync-simulator", daemon=True)
    thread.start()
    try:
        runner = asyncio.run_coroutine_threadsafe(_start(simulator, sock), loop).result()
        try:
            yield SimulatorHandle(
                _base_url(sock, config.prefix), config, simulator.catalog, simulator.faults, simulator.stats
            )
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        sock.close()  # already closed by the server once it started; this covers a failed start


def serve_forever(config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the simulator in the foreground until SIGINT or SIGTERM."""
    config = SimulatorConfig() if config is None else config
    sock = loopback_socket(host, port)
    try:
        asyncio.run(_serve_until_signalled(_simulator(config, None), sock))
    finally:
        sock.close()


async def _serve_until_signalled(simulator: Simulator, sock: socket.socket) -> None:
    runner = await _start(simulator, sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    config = simulator.config
    # The secret is the simulator's own, made up for the demo, so showing it is safe and saves a look-up.
    print(
        f"flowsync fake-api: {len(simulator.catalog)} flows at {_base_url(sock, config.prefix)} "
        f"(Api-Key {config.api_key!r}, secret {config.api_secret!r}); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
