"""An incident simulator with ground truth: telemetry, a config and what really happened.

Pure and seeded: `build(name, seed)` returns a `Simulation` (its topology, silences, true
incidents and the telemetry steps), the same every time for the same arguments. A layered
service graph (edge -> mid-tier -> data stores) carries diurnal and weekly traffic, noise and
deploys that shift levels; faults start on a root (saturation first, then latency and errors)
and cascade up the call graph hop by hop; a service stops reporting; blips, flapping series,
an alert storm from a shared dependency, a maintenance window and overlapping incidents.
With `logs=True` every service also writes log records (DESIGN.md shape) beside its points:
a steady mix of info and debug lines, a heartbeat, a little warning noise, and error lines
while it fails (its own failure on a root, the failing callee it calls on the others).

`write(sim, out_dir)` writes `telemetry.jsonl` (one message per line, replayable by
`quietpager replay`), `config.yaml` (valid for `load_config`) and `truth.json`.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import yaml

from pipeline.synthetic import ERRORS, LATENCY, SATURATION, TRAFFIC, hops_from
from pipeline.timeutil import format_timestamp

IncidentKind = Literal["fault", "stopped", "blip", "flap", "storm", "maintenance"]

#: Kinds that must page (recall counts these); the others must not.
PAGEABLE: Final = ("fault", "stopped", "storm")

SCENARIOS: Final = (
    "cascade",
    "stopped",
    "blips",
    "flapping",
    "storm",
    "maintenance",
    "overlap",
    "all",
)

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
class _Effect:
    """A change to one service's signals during `[start, end)`."""

    start: float
    end: float
    latency: float = 1.0
    errors: float = 0.0
    saturation: float = 0.0
    traffic: float = 1.0
    stopped: bool = False
    # With logs, whose failure the service logs errors about (itself on a root); "" none.
    blames: str = ""


@dataclass(slots=True)
class _Profile:
    latency: float
    traffic: float
    errors: float
    saturation: float


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
    effects: dict[str, list[_Effect]] = field(default_factory=dict)
    deploys: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    logs: bool = False

    @property
    def steps(self) -> int:
        """How many points each series gets."""
        return int(self.duration_s // self.step_s)

    def add(self, service: str, effect: _Effect) -> None:
        """Attach an effect to a service."""
        self.effects.setdefault(service, []).append(effect)


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


def _callers(topology: dict[str, list[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {s: set() for s in topology}
    for caller, callees in topology.items():
        for callee in callees:
            out[callee].add(caller)
    return out


class _Builder:
    """Places incidents on a timeline and records their truth and effects."""

    def __init__(self, sim: Simulation, rng: random.Random) -> None:
        self.sim = sim
        self.rng = rng
        self.callers = _callers(sim.topology)
        self.entry = {s for s, c in self.callers.items() if not c}
        self._count = 0

    def roots(self, count: int) -> list[str]:
        """`count` distinct data stores that have callers, so their faults cascade."""
        candidates = [s for s in DATA if len(self.callers[s]) >= 2]
        return self.rng.sample(candidates, count)

    def unrelated_roots(self) -> tuple[str, str]:
        """Two data stores with no caller in common: incidents that must not merge."""
        candidates = [s for s in DATA if self.callers[s]]
        pairs = [
            (a, b)
            for a in candidates
            for b in candidates
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
                self.sim.add(service, _Effect(onset, end, saturation=0.97))
                begin = onset + self.rng.uniform(45.0, 75.0)
                self.sim.add(service, _Effect(begin, end, latency=5.0, errors=0.2, blames=root))
                continue
            begin = onset + 60.0 + sum(delays[:hop])
            if begin >= end:
                continue
            latency = 1.0 + 3.0 / hop
            errors = 0.12 / hop
            traffic = 0.7 if service in self.entry else 1.0
            # The callee it sees failing: the first one on a shortest path to the root.
            callee = min(c for c in self.sim.topology[service] if hops.get(c) == hop - 1)
            self.sim.add(
                service, _Effect(begin, end, latency=latency, errors=errors, blames=callee)
            )
            if service in self.entry:
                # Users give up at a failing entry point: its traffic and its callees' drop.
                self.sim.add(service, _Effect(begin, end, traffic=traffic))
                for callee in self.sim.topology[service]:
                    self.sim.add(callee, _Effect(begin + 15.0, end, traffic=0.85))
                    starved.add(callee)
        affected = tuple(sorted(set(hops) | starved))
        self.sim.truth.append(TrueIncident(self._id(kind), kind, onset, end, root, affected))

    def stopped(self, service: str, onset: float, duration: float) -> None:
        """A service that stops reporting: no points at all for `duration`."""
        self.sim.add(service, _Effect(onset, onset + duration, stopped=True))
        self.sim.truth.append(
            TrueIncident(
                self._id("stopped"), "stopped", onset, onset + duration, service, (service,)
            )
        )

    def blip(self, service: str, onset: float) -> None:
        """A latency spike shorter than two minutes that recovers on its own."""
        duration = self.rng.uniform(20.0, 100.0)
        self.sim.add(service, _Effect(onset, onset + duration, latency=4.0))
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
            self.sim.add(service, _Effect(t, t + high, latency=factor))
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


def _place(builder: _Builder, name: str, at: float, gap: float = 3600.0) -> float:
    """Put scenario `name`'s incidents from `at`; returns when they are over (plus `gap`)."""
    rng = builder.rng
    if name == "cascade":
        for root in builder.roots(3):
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
        first, second = builder.unrelated_roots()
        builder.fault(first, at, 1800.0)
        builder.fault(second, at + 600.0, 1800.0)
        return at + 2400.0 + gap
    raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")


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


def build(name: str, seed: int = 1, step_s: float = 30.0, logs: bool = False) -> Simulation:
    """The simulation called `name` (one of SCENARIOS), seeded; with `logs`, log records too.

    The metric points are the same with or without logs: the logs draw from their own rng.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
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
    builder = _Builder(sim, rng)
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


def _load(ts: float) -> float:
    """Traffic relative to its mean: a daily curve (low at night) times a weekly one."""
    hour = (ts % 86400.0) / 3600.0
    daily = 1.0 + 0.4 * math.sin(2 * math.pi * (hour - 8.0) / 24.0)
    # Peaks mid-week, lowest at the weekend, smoothly.
    day = ((ts - 345_600.0) % 604_800.0) / 86400.0  # days since a Monday 00:00 UTC
    weekly = 1.0 + 0.15 * math.cos(2 * math.pi * (day - 2.5) / 7.0)
    return daily * weekly


def steps(sim: Simulation) -> Iterator[tuple[float, list[dict[str, Any]]]]:
    """Yield `(event_time, items)` per step: DESIGN.md metric dicts, then any log records."""
    rng = random.Random(f"values:{sim.name}:{sim.seed}")
    services = sorted(sim.topology)
    profiles = {
        s: _Profile(
            latency=0.02 + 0.2 * rng.random(),
            traffic=20 + 500 * rng.random(),
            errors=0.001 + 0.004 * rng.random(),
            saturation=0.2 + 0.2 * rng.random(),
        )
        for s in services
    }
    logs = _LogWriter(sim) if sim.logs else None
    for step in range(sim.steps):
        ts = sim.start + step * sim.step_s
        load = _load(ts)
        points: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for service in services:
            p = profiles[service]
            shift = 1.0 + sum(d for at, d in sim.deploys.get(service, ()) if at <= ts)
            latency = p.latency * shift * (1 + 0.1 * (load - 1)) * math.exp(rng.gauss(0, 0.05))
            traffic = p.traffic * load * (1 + rng.gauss(0, 0.03))
            errors = max(0.0, p.errors * (1 + rng.gauss(0, 0.2)))
            saturation = p.saturation * shift * load * (1 + rng.gauss(0, 0.03))
            stopped = False
            blames = ""
            slow = False
            for effect in sim.effects.get(service, ()):
                if not effect.start <= ts < effect.end:
                    continue
                stopped = stopped or effect.stopped
                blames = blames or effect.blames
                slow = slow or effect.latency > 1.0
                latency *= effect.latency
                traffic *= effect.traffic
                errors = max(errors, effect.errors * (1 + rng.gauss(0, 0.1)))
                if effect.saturation:
                    saturation = max(saturation, effect.saturation + rng.gauss(0, 0.005))
            if stopped:
                continue
            if logs is not None:
                records.extend(logs.lines(service, ts, blames, slow))
            labels = {"service": service}
            points.extend(
                [
                    {"name": LATENCY, "value": round(latency, 6), "ts": ts, "labels": labels},
                    {"name": TRAFFIC, "value": round(traffic, 3), "ts": ts, "labels": labels},
                    {"name": ERRORS, "value": round(errors, 6), "ts": ts, "labels": labels},
                    {
                        "name": SATURATION,
                        "value": round(min(1.0, max(0.0, saturation)), 4),
                        "ts": ts,
                        "labels": labels,
                    },
                ]
            )
        # After the points: a message is sorted by event time on replay anyway.
        yield ts, points + records


#: Healthy lines, (level, format): a service writes one to three of them per step.
_ROUTINE: Final = (
    ("info", "GET /api/v2/{resource}/{id} 200 {ms}ms"),
    ("info", "request {uuid} handled in {ms} ms status=200"),
    ("info", "accepted connection from {ip}:{port}"),
    ("debug", "cache lookup key={resource}:{id} hit={hit}"),
    ("debug", "flushed {n} metrics to collector in {ms} ms"),
)
_HEARTBEAT: Final = ("info", "heartbeat ok uptime={uptime}s workers={workers}")
#: Steady warning noise, and the stray warning of a blip or a flapping series.
_SLOW: Final = ("warning", "slow request {uuid} took {slow_ms} ms (threshold 500 ms)")
#: A failing root's own errors.
_OWN_FAILURE: Final = (
    ("error", "too many connections ({n} of 500 in use), rejecting client {ip}:{port}"),
    ("error", "query timeout after {slow_ms} ms on table {resource}"),
    ("error", "fsync took {slow_ms} ms, writes stalled on /dev/nvme0n1"),
)
#: A caller's errors about the failing callee it calls.
_CALLEE_FAILURE: Final = (
    ("error", "connection refused to {callee} at {callee_addr}"),
    ("error", "upstream timeout after 3000 ms calling {callee}"),
    ("error", "pool exhausted for {callee} (max 50)"),
)
_RESOURCES: Final = ("orders", "users", "items", "carts", "sessions", "prices", "events")
#: Warning noise per service per step (about one every ten minutes on a healthy service).
WARNING_NOISE: Final = 0.05


def _address(service: str, index: int) -> str:
    """A fixed address per service: the port says what kind of thing it is."""
    if service.endswith("-db"):
        port = 5432
    elif service.startswith("cache"):
        port = 6379
    elif service.startswith("queue"):
        port = 9092
    else:
        port = 8080
    return f"10.1.{index // 200}.{index % 200 + 10}:{port}"


class _LogWriter:
    """Writes each service's log records for one step, from its own seeded rng."""

    def __init__(self, sim: Simulation) -> None:
        self.rng = random.Random(f"logs:{sim.name}:{sim.seed}")
        self.step_s = sim.step_s
        self.start = sim.start
        self.addresses = {s: _address(s, i) for i, s in enumerate(sorted(sim.topology))}

    def lines(self, service: str, ts: float, blames: str, slow: bool) -> list[dict[str, Any]]:
        """The records `service` writes during the step at `ts`.

        `blames` is whose failure it logs errors about ("" when healthy); `slow` says its
        latency is raised, which on its own is worth at most a stray warning.
        """
        rng = self.rng
        chosen = [_HEARTBEAT, *rng.choices(_ROUTINE, k=rng.randint(0, 2))]
        if rng.random() < WARNING_NOISE or (slow and not blames and rng.random() < 0.2):
            chosen.append(_SLOW)
        if blames == service:
            chosen.extend(rng.choices(_OWN_FAILURE, k=rng.randint(2, 4)))
        elif blames:
            chosen.extend(rng.choices(_CALLEE_FAILURE, k=rng.randint(1, 3)))
        offsets = sorted(rng.uniform(0.0, self.step_s) for _ in chosen)
        labels = {"service": service}
        return [
            {
                "ts": round(ts + offset, 3),
                "level": level,
                "message": self._fill(text, service, ts, blames),
                "labels": labels,
            }
            for offset, (level, text) in zip(offsets, chosen, strict=True)
        ]

    def _fill(self, text: str, service: str, ts: float, blames: str) -> str:
        rng = self.rng
        # Only the variables the template names are drawn: fewer draws, same determinism.
        values: dict[str, object] = {}
        if "{resource}" in text:
            values["resource"] = rng.choice(_RESOURCES)
        if "{id}" in text:
            values["id"] = rng.randint(1, 999_999)
        if "{ms}" in text:
            values["ms"] = rng.randint(2, 180)
        if "{slow_ms}" in text:
            values["slow_ms"] = rng.randint(520, 4000)
        if "{uuid}" in text:
            values["uuid"] = uuid.UUID(int=rng.getrandbits(128))
        if "{ip}" in text:
            values["ip"] = f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            values["port"] = rng.randint(32768, 60999)
        if "{hit}" in text:
            values["hit"] = "true" if rng.random() < 0.9 else "false"
        if "{n}" in text:
            values["n"] = rng.randint(40, 499)
        if "{uptime}" in text:
            values["uptime"] = int(ts - self.start) + 86_400
            values["workers"] = 8
        if "{callee}" in text:
            values["callee"] = blames
            values["callee_addr"] = self.addresses.get(blames, "10.1.0.1:8080")
        return text.format(**values)


def config_data(sim: Simulation) -> dict[str, Any]:
    """The config the simulation is meant to run under (valid for `load_config`).

    `hold_for` is two minutes so a blip (under two minutes by definition) never holds, and
    `hold_max_gap` is one step so a streak needs every point anomalous. Simulated time is not
    the wall clock, so a live worker takes it however far ahead it runs (`max_future` off).
    """
    return {
        "detect": {"tick_every": "10s", "max_future": None},
        "correlate": {
            "group_window": "5m",
            "hold_for": "2m",
            "hold_max_gap": f"{sim.step_s:g}s",
            "resolve_after": "5m",
        },
        "topology": sim.topology,
        "silences": sim.silences,
        "receivers": [
            {"name": "oncall", "type": "alertmanager", "url": "http://127.0.0.1:8080/alertmanager"}
        ],
        "route": {"receivers": ["oncall"]},
    }


def truth_data(sim: Simulation) -> dict[str, Any]:
    """truth.json: the scenario and its incidents, in onset order."""
    return {
        "scenario": sim.name,
        "seed": sim.seed,
        "start": sim.start,
        "duration_s": sim.duration_s,
        "step_s": sim.step_s,
        "services": len(sim.topology),
        "incidents": [t.to_dict() for t in sorted(sim.truth, key=lambda t: (t.onset, t.id))],
    }


def messages(sim: Simulation) -> Iterator[bytes]:
    """One Kafka message (a JSON array of one step's points) per step."""
    for _, points in steps(sim):
        if points:
            yield orjson.dumps(points)


def write(sim: Simulation, out_dir: Path) -> dict[str, Path]:
    """Write telemetry.jsonl, config.yaml and truth.json into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "telemetry": out_dir / "telemetry.jsonl",
        "config": out_dir / "config.yaml",
        "truth": out_dir / "truth.json",
    }
    with paths["telemetry"].open("wb") as out:
        for message in messages(sim):
            out.write(message + b"\n")
    paths["config"].write_text(yaml.safe_dump(config_data(sim), sort_keys=False), encoding="utf-8")
    paths["truth"].write_bytes(orjson.dumps(truth_data(sim), option=orjson.OPT_INDENT_2))
    return paths
