"""What each simulated service logs: routine lines, a heartbeat, warning noise, failure errors."""

from __future__ import annotations

import random
import uuid
from typing import Any, Final

from pipeline.simulate.timeline import Simulation

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


class LogWriter:
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
