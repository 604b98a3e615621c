"""What a simulation emits: its telemetry steps, Kafka messages, and the files `write` makes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml

from pipeline.simulate.logs import LogWriter
from pipeline.simulate.profiles import ERRORS, LATENCY, SATURATION, TRAFFIC
from pipeline.simulate.scenarios import Scenario, shop
from pipeline.simulate.timeline import Simulation


def steps(sim: Simulation) -> Iterator[tuple[float, list[dict[str, Any]]]]:
    """Yield `(event_time, items)` per step: DESIGN.md metric dicts, then any log records."""
    seed = f"values:{sim.name}:{sim.seed}" if sim.values_seed is None else sim.values_seed
    rng = random.Random(seed)
    services = sorted(sim.topology)
    profiles = sim.baseline.profiles(rng, services)
    logs = LogWriter(sim) if sim.logs else None
    for step in range(sim.steps):
        ts = sim.start + step * sim.step_s
        load = sim.baseline.load(ts)
        points: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for service in services:
            shift = 1.0 + sum(d for at, d in sim.deploys.get(service, ()) if at <= ts)
            latency, traffic, errors, saturation = sim.baseline.values(
                profiles[service], rng, load, shift
            )
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
                if effect.error_noise:
                    errors = max(errors, effect.errors * (1 + rng.gauss(0, effect.error_noise)))
                elif effect.errors:
                    errors = max(errors, effect.errors)
                if effect.saturation:
                    saturation = max(saturation, effect.saturation + rng.gauss(0, 0.005))
            if stopped:
                continue
            if logs is not None:
                records.extend(logs.lines(service, ts, blames, slow))
            labels = {"service": service, **sim.labels}
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


def generate(scenario: Scenario) -> Iterator[tuple[float, list[dict[str, Any]]]]:
    """Yield `(event_time, points)` per step of the shop `scenario`."""
    return steps(shop(scenario))


def agent_messages(scenario: Scenario) -> Iterator[tuple[float, list[tuple[bytes, bytes]]]]:
    """Per step, the Kafka messages the shop's agent sends: one JSON array per service, keyed
    by it."""
    for ts, points in generate(scenario):
        by_service: dict[str, list[dict[str, Any]]] = {}
        for point in points:
            by_service.setdefault(point["labels"]["service"], []).append(point)
        yield ts, [(s.encode(), orjson.dumps(batch)) for s, batch in by_service.items()]
