"""How a healthy service looks: its profile, the load curve it follows and each step's noise."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

LATENCY: Final = "http_request_duration_seconds"
TRAFFIC: Final = "http_requests_per_second"
ERRORS: Final = "http_request_errors_ratio"
SATURATION: Final = "cpu_utilization"


@dataclass(frozen=True, slots=True)
class Profile:
    """One service's healthy level of each golden signal."""

    latency: float
    traffic: float
    errors: float
    saturation: float


@dataclass(frozen=True, slots=True)
class Uniform:
    """A uniform draw from `[low, low + spread)`."""

    low: float
    spread: float

    def draw(self, rng: random.Random) -> float:
        """One value."""
        return self.low + self.spread * rng.random()


@dataclass(frozen=True, slots=True)
class Baseline:
    """The healthy behaviour of a simulated fleet: profile ranges, load and how noise enters.

    Each step multiplies traffic by `load(ts)`; latency by `1 + latency_load * (load - 1)`;
    saturation by the load too when `saturation_follows_load`. Latency noise is lognormal
    (`exp(N(0, 0.05))`) or, when not `lognormal_latency`, `1 + N(0, 0.05)`.
    """

    latency: Uniform
    traffic: Uniform
    errors: Uniform
    saturation: Uniform
    load: Callable[[float], float]
    latency_load: float
    saturation_follows_load: bool
    lognormal_latency: bool

    def profiles(self, rng: random.Random, services: Sequence[str]) -> dict[str, Profile]:
        """A profile per service, drawn in the order given, latency to saturation."""
        return {
            s: Profile(
                latency=self.latency.draw(rng),
                traffic=self.traffic.draw(rng),
                errors=self.errors.draw(rng),
                saturation=self.saturation.draw(rng),
            )
            for s in services
        }

    def values(
        self, profile: Profile, rng: random.Random, load: float, shift: float
    ) -> tuple[float, float, float, float]:
        """A healthy step's (latency, traffic, errors, saturation) under `load(ts)`, shifted by
        the deploys so far."""
        noise = rng.gauss(0, 0.05)
        latency = (
            profile.latency
            * shift
            * (1 + self.latency_load * (load - 1))
            * (math.exp(noise) if self.lognormal_latency else 1 + noise)
        )
        traffic = profile.traffic * load * (1 + rng.gauss(0, 0.03))
        errors = max(0.0, profile.errors * (1 + rng.gauss(0, 0.2)))
        busy = load if self.saturation_follows_load else 1.0
        saturation = profile.saturation * shift * busy * (1 + rng.gauss(0, 0.03))
        return latency, traffic, errors, saturation


def weekly_load(ts: float) -> float:
    """Traffic relative to its mean: a daily curve (low at night) times a weekly one.

    >>> round(weekly_load(1_795_737_600.0 + 14 * 3600.0), 3)  # a Friday, 14:00 UTC
    1.338
    """
    hour = (ts % 86400.0) / 3600.0
    daily = 1.0 + 0.4 * math.sin(2 * math.pi * (hour - 8.0) / 24.0)
    # Peaks mid-week, lowest at the weekend, smoothly.
    day = ((ts - 345_600.0) % 604_800.0) / 86400.0  # days since a Monday 00:00 UTC
    weekly = 1.0 + 0.15 * math.cos(2 * math.pi * (day - 2.5) / 7.0)
    return daily * weekly


def mild_diurnal_load(ts: float) -> float:
    """A ±10% daily swing, highest at 06:00 UTC.

    >>> mild_diurnal_load(6 * 3600.0)
    1.1
    """
    return 1.0 + 0.1 * math.sin(2 * math.pi * (ts % 86400) / 86400)


#: The scenarios' fleet: daily and weekly load in every signal, lognormal latency noise.
FLEET: Final = Baseline(
    latency=Uniform(0.02, 0.2),
    traffic=Uniform(20, 500),
    errors=Uniform(0.001, 0.004),
    saturation=Uniform(0.2, 0.2),
    load=weekly_load,
    latency_load=0.1,
    saturation_follows_load=True,
    lognormal_latency=True,
)

#: The demo's shop: flat but for a mild daily traffic swing.
SHOP: Final = Baseline(
    latency=Uniform(0.05, 0.15),
    traffic=Uniform(50, 400),
    errors=Uniform(0.002, 0.004),
    saturation=Uniform(0.3, 0.2),
    load=mild_diurnal_load,
    latency_load=0.0,
    saturation_follows_load=False,
    lognormal_latency=False,
)
