"""What goes wrong: faults that spread up the call graph hop by hop, and the lesser incidents.

Two ways of placing a root-cause fault share one spread (`hops_from`): the scenarios'
`IncidentBuilder.fault` (saturation first, then latency and errors, then callers after drawn
per-hop delays) and the shop's `Fault` (every reached service after a fixed hop delay).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.simulate.timeline import (
    Effect,
    IncidentKind,
    Simulation,
    TrueIncident,
    callers_of,
    hops_from,
)
from pipeline.timeutil import format_timestamp


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


def fault_reach(start: float, topology: dict[str, list[str]], fault: Fault) -> dict[str, float]:
    """Each service `fault` reaches, with the event time it starts to show."""
    hops = hops_from(fault.root, topology)
    return {s: start + fault.onset_s + h * fault.hop_delay_s for s, h in hops.items()}


def add_fault(sim: Simulation, fault: Fault, number: int) -> None:
    """The shop's fault: the root at full strength, callers at half latency and 60% errors.

    Entry points lose 40% of their traffic (users give up); the error ratio is set, not drawn.
    """
    reach = fault_reach(sim.start, sim.topology, fault)
    entry = {s for s, c in callers_of(sim.topology).items() if not c}
    hops = hops_from(fault.root, sim.topology)
    end = sim.start + fault.onset_s + fault.duration_s
    for service, begin in reach.items():
        is_root = service == fault.root
        callee = (
            service
            if is_root
            else min(c for c in sim.topology[service] if hops.get(c) == hops[service] - 1)
        )
        sim.add(
            service,
            Effect(
                begin,
                end,
                latency=fault.latency_factor if is_root else fault.latency_factor / 2,
                errors=fault.error_ratio * (1.0 if is_root else 0.6),
                saturation=fault.saturation if is_root else 0.0,
                traffic=0.6 if service in entry else 1.0,
                blames=callee,
                error_noise=0.0,
            ),
        )
    sim.truth.append(
        TrueIncident(
            f"fault-{number}",
            "fault",
            sim.start + fault.onset_s,
            end,
            fault.root,
            tuple(sorted(reach)),
        )
    )


def add_blip(sim: Simulation, blip: Blip, number: int) -> None:
    """The shop's blip: latency only, nothing drawn."""
    begin = sim.start + blip.onset_s
    end = begin + blip.duration_s
    sim.add(blip.service, Effect(begin, end, latency=blip.latency_factor, error_noise=0.0))
    sim.truth.append(
        TrueIncident(f"blip-{number}", "blip", begin, end, blip.service, (blip.service,))
    )


class IncidentBuilder:
    """Places the scenarios' incidents on a timeline and records their truth and effects."""

    def __init__(self, sim: Simulation, rng: random.Random) -> None:
        self.sim = sim
        self.rng = rng
        self.callers = callers_of(sim.topology)
        self.entry = {s for s, c in self.callers.items() if not c}
        self._count = 0

    def roots(self, candidates: tuple[str, ...], count: int) -> list[str]:
        """`count` distinct `candidates` that have two callers or more, so their faults cascade."""
        return self.rng.sample([s for s in candidates if len(self.callers[s]) >= 2], count)

    def unrelated_roots(self, candidates: tuple[str, ...]) -> tuple[str, str]:
        """Two `candidates` with no caller in common: incidents that must not merge."""
        called = [s for s in candidates if self.callers[s]]
        pairs = [
            (a, b)
            for a in called
            for b in called
            if a < b and not self.callers[a] & self.callers[b]
        ]
        first, second = self.rng.choice(pairs)
        return first, second

    def _id(self, kind: str) -> str:
        self._count += 1
        return f"{kind}-{self._count}"

    def fault(self, root: str, onset: float, duration: float, kind: IncidentKind = "fault") -> None:
        """A root-cause fault: saturation, then latency and errors, then callers hop by hop."""
        hops = hops_from(root, self.sim.topology)
        # Each hop's delay is drawn once per incident: 30-90 s of retries and timeouts.
        delays = [self.rng.uniform(30.0, 90.0) for _ in range(max(hops.values()) + 1)]
        end = onset + duration
        starved: set[str] = set()
        for service, hop in hops.items():
            if hop == 0:
                self.sim.add(service, Effect(onset, end, saturation=0.97))
                begin = onset + self.rng.uniform(45.0, 75.0)
                self.sim.add(service, Effect(begin, end, latency=5.0, errors=0.2, blames=root))
                continue
            begin = onset + 60.0 + sum(delays[:hop])
            if begin >= end:
                continue
            latency = 1.0 + 3.0 / hop
            errors = 0.12 / hop
            traffic = 0.7 if service in self.entry else 1.0
            # The callee it sees failing: the first one on a shortest path to the root.
            callee = min(c for c in self.sim.topology[service] if hops.get(c) == hop - 1)
            self.sim.add(service, Effect(begin, end, latency=latency, errors=errors, blames=callee))
            if service in self.entry:
                # Users give up at a failing entry point: its traffic and its callees' drop.
                self.sim.add(service, Effect(begin, end, traffic=traffic))
                for callee in self.sim.topology[service]:
                    self.sim.add(callee, Effect(begin + 15.0, end, traffic=0.85))
                    starved.add(callee)
        affected = tuple(sorted(set(hops) | starved))
        self.sim.truth.append(TrueIncident(self._id(kind), kind, onset, end, root, affected))

    def stopped(self, service: str, onset: float, duration: float) -> None:
        """A service that stops reporting: no points at all for `duration`."""
        self.sim.add(service, Effect(onset, onset + duration, stopped=True))
        self.sim.truth.append(
            TrueIncident(
                self._id("stopped"), "stopped", onset, onset + duration, service, (service,)
            )
        )

    def blip(self, service: str, onset: float) -> None:
        """A latency spike shorter than two minutes that recovers on its own."""
        duration = self.rng.uniform(20.0, 100.0)
        self.sim.add(service, Effect(onset, onset + duration, latency=4.0))
        self.sim.truth.append(
            TrueIncident(self._id("blip"), "blip", onset, onset + duration, service, (service,))
        )

    def flapping(self, service: str, onset: float, duration: float) -> None:
        """A latency series hovering around its threshold: short anomalous stretches for hours."""
        step = self.sim.step_s
        t = onset
        episodes: list[tuple[float, float]] = []
        while t < onset + duration:
            # Mostly one to three points over, now and then a stretch long enough to hold.
            points = self.rng.randint(1, 3) if self.rng.random() < 0.8 else self.rng.randint(4, 8)
            high = points * step
            factor = self.rng.uniform(1.4, 2.0)
            self.sim.add(service, Effect(t, t + high, latency=factor))
            episodes.append((t, t + high))
            t += high + self.rng.randint(1, 6) * step
        self.sim.truth.append(
            TrueIncident(
                self._id("flap"), "flap", onset, t, service, (service,), episodes=tuple(episodes)
            )
        )

    def maintenance(self, root: str, onset: float, duration: float) -> None:
        """Planned work: a fault on `root` inside a silence covering everything it reaches."""
        before = len(self.sim.truth)
        self.fault(root, onset, duration, kind="maintenance")
        truth = self.sim.truth[before]
        pattern = "|".join(truth.affected)
        self.sim.silences.append(
            {
                "matchers": [f"service=~{pattern}"],
                "starts_at": format_timestamp(onset - 600.0),
                "ends_at": format_timestamp(onset + duration + 900.0),
                "comment": f"planned maintenance on {root}",
            }
        )
