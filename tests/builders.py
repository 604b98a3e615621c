"""Builders for test data shared by several test modules."""

from __future__ import annotations

import math
from collections.abc import Iterable

from detectors import SeriesDetector
from detectors.layout import Described, Field, lay_out
from pipeline.model import Anomaly, SeriesKey, Signal

T0 = 1_795_683_600.0  # 2026-11-26T09:00:00Z

#: (signal, direction, ceiling) a per-signal model factory gives, called with `ceiling=2.0`:
#: the golden-signal semantics every model keeps.
SIGNAL_MODELS: list[tuple[str, str, float | None]] = [
    ("latency", "up", None),
    ("errors", "up", None),
    ("traffic", "both", None),
    ("saturation", "up", 2.0),
    ("generic", "both", None),
]


def alert(
    offset: float,
    service: str,
    signal: str = "latency",
    *,
    score: float = 0.999,
    scope: str = "default",
    value: float = 2.0,
) -> Anomaly:
    """An anomaly `offset` seconds after T0 on the `<signal>` series of `service`."""
    return Anomaly(
        ts=T0 + offset,
        series=SeriesKey.of(f"{signal}_metric", {"service": service}),
        service=service,
        signal=Signal(signal),
        value=value,
        expected=1.0,
        score=score,
        threshold=0.99,
        scope=scope,
    )


def feed(detector: SeriesDetector, values: Iterable[float]) -> list[float]:
    """Score then learn each value in one `step`, as the detect stage does; return the scores."""
    return [detector.step(value)[0] for value in values]


def fresh_values(fields: tuple[Field, ...]) -> list[float]:
    """The floats a part's described fields start as, in order (for the parts' own tests)."""
    return list(lay_out([("", fields)]).values)


def same_floats(left: list[float], right: list[float]) -> bool:
    """Equal, NaN equal to NaN (a fresh persistence forecast has no last value)."""
    return len(left) == len(right) and all(
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(left, right, strict=True)
    )


def described_parameters_match(part: Described) -> bool:
    """Whether each described parameter named like an attribute of the part has its value (a
    None setting reads 0; a direction, a derived number, has no such attribute or is skipped)
    and no name is described twice."""
    fields = part.parameter_fields()
    for field in fields:
        setting = getattr(part, field.name, "")
        if isinstance(setting, str):
            continue
        if field.value != (0.0 if setting is None else setting):
            return False
    return len({field.name for field in fields}) == len(fields)
