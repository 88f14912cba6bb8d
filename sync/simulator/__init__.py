"""A faithful fake of the vendor's flow API over real HTTP on loopback, for the demo, tests and benchmarks.

    with running_simulator(SimulatorConfig(flow_count=50)) as sim:
        sim.faults.queue(7, Fault.http(503), Fault.http(503))  # flow 7 fails twice, then succeeds
        ...  # point the client at sim.base_url, signing with sim.config.api_key / api_secret
        sim.catalog.evolve(random.Random(1), change=0.2, delete=0.05)

Modules: `catalog` (the flows), `faults` (what goes wrong), `server` (the HTTP
application), `runner` (background thread or foreground process).
"""

from sync.simulator.catalog import Evolution, Flow, FlowCatalog
from sync.simulator.faults import LIST, Fault, FaultKind, FaultPlan
from sync.simulator.runner import SimulatorHandle, running_simulator, serve_forever
from sync.simulator.server import Simulator, SimulatorConfig, SimulatorStats

__all__ = [
    "LIST",
    "Evolution",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "Flow",
    "FlowCatalog",
    "Simulator",
    "SimulatorConfig",
    "SimulatorHandle",
    "SimulatorStats",
    "running_simulator",
    "serve_forever",
]
