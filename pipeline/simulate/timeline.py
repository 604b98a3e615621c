"""What a simulation is: its graph, the truth, and the effects that bend each service's signals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pipeline.simulate.profiles import FLEET, Baseline
from pipeline.timeutil import format_timestamp

IncidentKind = Literal["fault", "stopped", "blip", "flap", "storm", "maintenance"]

#: Kinds that must page (recall counts these); the others must not.
PAGEABLE: Final = ("fault", "stopped", "storm")


@dataclass(frozen=True, slots=True)
class TrueIncident:
    """One thing that really happened, as the benchmark scores it."""

    id: str
    kind: IncidentKind
    onset: float
    end: float
    root: str
    affected: tuple[str, ...]
    episodes: tuple[tuple[float, float], ...] = ()  # flapping: each anomalous stretch

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape in truth.json."""
        return {
            "id": self.id,
            "kind": self.kind,
            "onset": self.onset,
            "onset_at": format_timestamp(self.onset),
            "end": self.end,
            "root": self.root,
            "affected": list(self.affected),
            "episodes": [list(e) for e in self.episodes],
        }


@dataclass(frozen=True, slots=True)
class Effect:
    """A change to one service's signals during `[start, end)`.

    Latency and traffic are multiplied, errors and saturation raised to at least the given
    level. `error_noise` is the relative spread drawn around `errors` each step; 0 draws
    nothing, which is how the shop's faults have always set their error ratio.
    """

    start: float
    end: float
    latency: float = 1.0
    errors: float = 0.0
    saturation: float = 0.0
    traffic: float = 1.0
    stopped: bool = False
    # With logs, whose failure the service logs errors about (itself on a root); "" none.
    blames: str = ""
    error_noise: float = 0.1


@dataclass(slots=True)
class Simulation:
    """A scenario, built: graph, silences, truth and what to emit."""

    name: str
    seed: int
    start: float
    duration_s: float
    step_s: float
    topology: dict[str, list[str]]
    truth: list[TrueIncident] = field(default_factory=list)
    silences: list[dict[str, Any]] = field(default_factory=list)
    effects: dict[str, list[Effect]] = field(default_factory=dict)
    deploys: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    logs: bool = False
    baseline: Baseline = FLEET
    #: Labels every point carries after `service`.
    labels: dict[str, str] = field(default_factory=dict)
    #: Seeds the profiles and the per-step noise; None: "values:<name>:<seed>".
    values_seed: int | str | None = None

    @property
    def steps(self) -> int:
        """How many points each series gets."""
        return int(self.duration_s // self.step_s)

    def add(self, service: str, effect: Effect) -> None:
        """Attach an effect to a service."""
        self.effects.setdefault(service, []).append(effect)


def hops_from(root: str, topology: dict[str, list[str]]) -> dict[str, int]:
    """Distance of each caller (transitively) from `root` in the call graph.

    >>> hops_from("db", {"web": ["api"], "api": ["db"], "db": [], "cron": []})
    {'db': 0, 'api': 1, 'web': 2}
    """
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


def callers_of(topology: dict[str, list[str]]) -> dict[str, set[str]]:
    """Who calls each service; the entry points are those nobody calls.

    >>> callers_of({"web": ["db"], "db": []})
    {'web': set(), 'db': {'web'}}
    """
    out: dict[str, set[str]] = {s: set() for s in topology}
    for caller, callees in topology.items():
        for callee in callees:
            out.setdefault(callee, set()).add(caller)
    return out
