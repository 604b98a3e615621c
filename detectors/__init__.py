"""Online anomaly detectors for the golden signals; nothing here knows about Kafka."""

from __future__ import annotations

from typing import Protocol

__all__ = ["SeriesDetector"]


class SeriesDetector(Protocol):
    """What the detect stage needs of one series' model (River's score-then-learn habit)."""

    @property
    def expected(self) -> float:
        """The baseline forecast of the next value."""
        ...

    @property
    def n_seen(self) -> int:
        """How many values were learned."""
        ...

    def score_one(self, x: float) -> float:
        """How unusual `x` is, in [0, 1]; does not learn it."""
        ...

    def continues(self, x: float) -> bool:
        """Whether `x` carries on an event whose alarm the model has since muted."""
        ...

    def learn_one(self, x: float) -> None:
        """Learn `x`."""
        ...

    def step(self, x: float, t: float | None = None) -> tuple[float, bool]:
        """`(score_one(x), continues(x))`, then `learn_one(x)`: the stage's one call per point.

        `t` is the point's event time in seconds, for models that know time of day.
        """
        ...
