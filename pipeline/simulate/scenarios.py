"""The named scenarios: the fleet's incident scenarios and the demo's shop.

`build(name, seed)` turns a name into a `Simulation`; the fleet's scenarios lay incidents out
on a layered graph of 44 services, the shop compiles a `Scenario` (faults and blips on eight
services) into the same shape.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Final

from pipeline.simulate.faults import (
    Blip,
    Fault,
    IncidentBuilder,
    add_blip,
    add_fault,
    fault_reach,
)
from pipeline.simulate.profiles import SHOP
from pipeline.simulate.timeline import Simulation

SCENARIOS: Final = (
    "cascade",
    "stopped",
    "blips",
    "flapping",
    "storm",
    "maintenance",
    "overlap",
    "all",
    "shop",
)
#: The scenarios of the 44-service fleet (`bench denoise` runs these).
FLEET_SCENARIOS: Final = SCENARIOS[:-1]

# Friday 2026-11-27T00:00:00Z, so two days cross into the weekend.
START: Final = 1_795_737_600.0
WARMUP_S: Final = 2 * 3600.0

EDGE: Final = ("web", "mobile-api", "partner-api", "admin", "search-gw", "checkout-gw")
MID: Final = (
    "orders",
    "users",
    "payments",
    "inventory",
    "catalog",
    "pricing",
    "shipping",
    "reviews",
    "recommend",
    "cart",
    "auth",
    "notify",
    "search",
    "ledger",
    "fraud",
    "loyalty",
    "media",
    "geo",
    "tax",
    "coupons",
    "profile",
    "billing",
    "reports",
    "sessions",
)
DATA: Final = (
    "orders-db",
    "users-db",
    "payments-db",
    "inventory-db",
    "catalog-db",
    "search-index",
    "cache-a",
    "cache-b",
    "queue-a",
    "ledger-db",
    "media-store",
    "reports-db",
    "billing-db",
)
#: The data store every mid-tier service calls: its failure is the alert storm.
SHARED: Final = "config-kv"


#: A small shop: who calls whom. Faults in a dependency show up in its callers.
SHOP_TOPOLOGY: Final[dict[str, list[str]]] = {
    "frontend": ["checkout", "catalog", "auth"],
    "checkout": ["payments", "inventory", "auth"],
    "catalog": ["inventory"],
    "payments": ["payments-db"],
    "inventory": ["inventory-db"],
    "auth": [],
    "payments-db": [],
    "inventory-db": [],
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """The shop as an agent emits it: when, how often, for which graph, and what goes wrong."""

    start: float = 1_795_683_600.0  # 2026-11-26T09:00:00Z
    duration_s: float = 2400.0
    step_s: float = 10.0
    seed: int = 7
    topology: dict[str, list[str]] = field(default_factory=lambda: dict(SHOP_TOPOLOGY))
    faults: tuple[Fault, ...] = (Fault(root="payments-db", onset_s=1200.0, duration_s=600.0),)
    blips: tuple[Blip, ...] = (Blip(service="catalog", onset_s=800.0),)
    region: str = "eu-west-1"

    @property
    def steps(self) -> int:
        """How many points each series gets."""
        return int(self.duration_s // self.step_s)


def affected_services(scenario: Scenario, fault: Fault) -> dict[str, float]:
    """Each service the fault reaches, with the event time it starts to show."""
    return fault_reach(scenario.start, scenario.topology, fault)


def shop(scenario: Scenario, name: str = "shop", logs: bool = False) -> Simulation:
    """The shop `scenario` as a simulation: its seed draws the profiles and the noise."""
    sim = Simulation(
        name=name,
        seed=scenario.seed,
        start=scenario.start,
        duration_s=scenario.duration_s,
        step_s=scenario.step_s,
        topology=scenario.topology,
        logs=logs,
        baseline=SHOP,
        labels={"region": scenario.region},
        values_seed=scenario.seed,
    )
    for number, fault in enumerate(scenario.faults, 1):
        add_fault(sim, fault, number)
    for number, blip in enumerate(scenario.blips, len(scenario.faults) + 1):
        add_blip(sim, blip, number)
    return sim


def layered_topology(rng: random.Random) -> dict[str, list[str]]:
    """Edge services call 4-6 mid-tier services; mid-tier calls 1-2 others and 1-2 stores.

    Every mid-tier service also calls `SHARED`. Mid-tier calls only go "down" the MID list,
    so the graph has no cycles.
    """
    topology: dict[str, list[str]] = {}
    for edge in EDGE:
        topology[edge] = sorted(rng.sample(MID[:16], rng.randint(4, 6)))
    for index, mid in enumerate(MID):
        later = MID[index + 1 :]
        calls = set(rng.sample(later, min(len(later), rng.randint(0, 2))))
        calls |= set(rng.sample(DATA, rng.randint(1, 2)))
        calls.add(SHARED)
        topology[mid] = sorted(calls)
    for store in (*DATA, SHARED):
        topology[store] = []
    return topology


def _place(builder: IncidentBuilder, name: str, at: float, gap: float = 3600.0) -> float:
    """Put scenario `name`'s incidents from `at`; returns when they are over (plus `gap`)."""
    rng = builder.rng
    if name == "cascade":
        for root in builder.roots(DATA, 3):
            duration = rng.uniform(900.0, 2400.0)
            builder.fault(root, at, duration)
            at += duration + gap
        return at
    if name == "stopped":
        builder.stopped("shipping", at, 1800.0)
        return at + 1800.0 + gap
    if name == "blips":
        for index in range(8):
            builder.blip(rng.choice((*MID, *DATA)), at + index * 1200.0)
        return at + 8 * 1200.0 + gap
    if name == "flapping":
        builder.flapping("recommend", at, 3 * 3600.0)
        return at + 3 * 3600.0 + gap
    if name == "storm":
        builder.fault(SHARED, at, 1800.0, kind="storm")
        return at + 1800.0 + gap
    if name == "maintenance":
        builder.maintenance("ledger-db", at, 2400.0)
        return at + 2400.0 + gap
    if name == "overlap":
        first, second = builder.unrelated_roots(DATA)
        builder.fault(first, at, 1800.0)
        builder.fault(second, at + 600.0, 1800.0)
        return at + 2400.0 + gap
    raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(FLEET_SCENARIOS)}")


#: Event-time length of each single scenario (the "all" scenario is two days).
_LENGTH: Final = {
    "cascade": 10 * 3600.0,
    "stopped": 5 * 3600.0,
    "blips": 6 * 3600.0,
    "flapping": 6 * 3600.0,
    "storm": 5 * 3600.0,
    "maintenance": 5 * 3600.0,
    "overlap": 5 * 3600.0,
    "all": 2 * 86400.0,
}


def build(name: str, seed: int = 1, step_s: float | None = None, logs: bool = False) -> Simulation:
    """The simulation called `name` (one of SCENARIOS), seeded; with `logs`, log records too.

    Steps are 30 s on the fleet and 10 s in the shop unless `step_s` says otherwise. The
    metric points are the same with or without logs: the logs draw from their own rng.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    if name == "shop":
        scenario = Scenario(seed=seed)
        if step_s is not None:
            scenario = replace(scenario, step_s=step_s)
        return shop(scenario, logs=logs)
    step_s = 30.0 if step_s is None else step_s
    rng = random.Random(f"{name}:{seed}")
    sim = Simulation(
        name=name,
        seed=seed,
        start=START,
        duration_s=_LENGTH[name],
        step_s=step_s,
        topology=layered_topology(random.Random(seed)),
        logs=logs,
    )
    builder = IncidentBuilder(sim, rng)
    at = START + WARMUP_S
    if name == "all":
        # The single scenarios one after another, a blip or two sprinkled in between.
        for part in ("cascade", "storm", "stopped", "maintenance", "overlap", "flapping"):
            at = _place(builder, part, at, gap=3 * 3600.0)
            builder.blip(rng.choice(MID), at - 5400.0)
        builder.blip(rng.choice(DATA), at)
        at = _place(builder, "blips", at + 1200.0)
        assert at < START + sim.duration_s, "the 'all' timeline overflows its two days"
    else:
        _place(builder, name, at)
    _deploys(sim, rng)
    return sim


def _deploys(sim: Simulation, rng: random.Random) -> None:
    """About one deploy per service per day, each shifting latency and saturation a little."""
    for service in sorted(sim.topology):
        t = sim.start + rng.expovariate(1 / 86400.0)
        shifts: list[tuple[float, float]] = []
        while t < sim.start + sim.duration_s:
            shifts.append((t, rng.uniform(-0.08, 0.08)))
            t += rng.expovariate(1 / 86400.0)
        sim.deploys[service] = shifts
