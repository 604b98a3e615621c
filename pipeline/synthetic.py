"""A synthetic telemetry agent: the four golden signals for a service graph, with injected faults.

Pure: a seeded generator of metric points in DESIGN.md's format. The demo, the tests and
the throughput benchmark all draw from it, so they exercise the same shapes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

#: A small shop: who calls whom. Faults in a dependency show up in its callers.
SHOP_TOPOLOGY: dict[str, list[str]] = {
    "frontend": ["checkout", "catalog", "auth"],
    "checkout": ["payments", "inventory", "auth"],
    "catalog": ["inventory"],
    "payments": ["payments-db"],
    "inventory": ["inventory-db"],
    "auth": [],
    "payments-db": [],
    "inventory-db": [],
}

LATENCY = "http_request_duration_seconds"
TRAFFIC = "http_requests_per_second"
ERRORS = "http_request_errors_ratio"
SATURATION = "cpu_utilization"


@dataclass(frozen=True, slots=True)
class Fault:
    """An injected incident: the root service degrades, its callers follow after `hop_delay_s`."""

    root: str
    onset_s: float
    duration_s: float
    hop_delay_s: float = 30.0
    latency_factor: float = 6.0
    error_ratio: float = 0.25
    saturation: float = 0.97


@dataclass(frozen=True, slots=True)
class Blip:
    """A short latency spike on one service that recovers on its own; it must not page."""

    service: str
    onset_s: float
    duration_s: float = 20.0
    latency_factor: float = 4.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """What the agent emits: when, how often, for which graph, and what goes wrong."""

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


def hops_from(root: str, topology: dict[str, list[str]]) -> dict[str, int]:
    """Distance of each caller (transitively) from `root` in the call graph."""
    callers: dict[str, list[str]] = {s: [] for s in topology}
    for caller, callees in topology.items():
        for callee in callees:
            callers.setdefault(callee, []).append(caller)
    hops = {root: 0}
    frontier = [root]
    while frontier:
        nxt = []
        for service in frontier:
            for caller in sorted(callers.get(service, [])):
                if caller not in hops:
                    hops[caller] = hops[service] + 1
                    nxt.append(caller)
        frontier = nxt
    return hops


@dataclass(frozen=True, slots=True)
class _Profile:
    latency: float
    traffic: float
    errors: float
    saturation: float


def affected_services(scenario: Scenario, fault: Fault) -> dict[str, float]:
    """Each service the fault reaches, with the event time it starts to show."""
    hops = hops_from(fault.root, scenario.topology)
    return {s: scenario.start + fault.onset_s + h * fault.hop_delay_s for s, h in hops.items()}


def generate(scenario: Scenario) -> Iterator[tuple[float, list[dict[str, Any]]]]:
    """Yield `(event_time, points)` per step; points are DESIGN.md metric dicts."""
    rng = random.Random(scenario.seed)
    services = sorted(scenario.topology)
    profiles = {
        s: _Profile(
            latency=0.05 + 0.15 * rng.random(),
            traffic=50 + 400 * rng.random(),
            errors=0.002 + 0.004 * rng.random(),
            saturation=0.3 + 0.2 * rng.random(),
        )
        for s in services
    }
    reach = [(fault, affected_services(scenario, fault)) for fault in scenario.faults]
    called = {callee for callees in scenario.topology.values() for callee in callees}
    entry_points = {s for s in services if s not in called}
    for step in range(scenario.steps):
        ts = scenario.start + step * scenario.step_s
        diurnal = 1.0 + 0.1 * math.sin(2 * math.pi * (ts % 86400) / 86400)
        points: list[dict[str, Any]] = []
        for service in services:
            p = profiles[service]
            latency = p.latency * (1 + rng.gauss(0, 0.05))
            traffic = p.traffic * diurnal * (1 + rng.gauss(0, 0.03))
            errors = max(0.0, p.errors * (1 + rng.gauss(0, 0.2)))
            saturation = min(1.0, max(0.0, p.saturation * (1 + rng.gauss(0, 0.03))))
            for fault, starts in reach:
                begin = starts.get(service)
                end = scenario.start + fault.onset_s + fault.duration_s
                if begin is None or not begin <= ts < end:
                    continue
                is_root = service == fault.root
                latency *= fault.latency_factor if is_root else fault.latency_factor / 2
                errors = max(errors, fault.error_ratio * (1.0 if is_root else 0.6))
                if is_root:
                    saturation = max(saturation, fault.saturation + rng.gauss(0, 0.005))
                if service in entry_points:
                    # Users give up when the entry point errors: its traffic drops.
                    traffic *= 0.6
            for blip in scenario.blips:
                begin = scenario.start + blip.onset_s
                if blip.service == service and begin <= ts < begin + blip.duration_s:
                    latency *= blip.latency_factor
            labels = {"service": service, "region": scenario.region}
            points.extend(
                [
                    {"name": LATENCY, "value": round(latency, 6), "ts": ts, "labels": labels},
                    {"name": TRAFFIC, "value": round(traffic, 3), "ts": ts, "labels": labels},
                    {"name": ERRORS, "value": round(errors, 6), "ts": ts, "labels": labels},
                    {"name": SATURATION, "value": round(saturation, 4), "ts": ts, "labels": labels},
                ]
            )
        yield ts, points


def agent_messages(scenario: Scenario) -> Iterator[tuple[float, list[tuple[bytes, bytes]]]]:
    """Per step, the Kafka messages an agent sends: one JSON array per service, keyed by it."""
    for ts, points in generate(scenario):
        by_service: dict[str, list[dict[str, Any]]] = {}
        for point in points:
            by_service.setdefault(point["labels"]["service"], []).append(point)
        yield ts, [(s.encode(), orjson.dumps(batch)) for s, batch in by_service.items()]
