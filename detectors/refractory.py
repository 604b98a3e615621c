"""The refractory period: one alarm per event."""

from __future__ import annotations

from detectors.layout import Field

__all__ = ["Refractory"]


class Refractory:
    """Mutes scores for `period` points after one reaches `level`: one alarm per event.

    River-style on scores: `score_one(score)` is the score or 0.0 while muted, and
    `learn_one(score)` (with the unmuted score) moves the clock on.

    >>> refractory = Refractory(period=2, level=0.9)
    >>> out = []
    >>> for score in [0.5, 0.95, 0.99, 0.97, 0.96]:
    ...     out.append(refractory.score_one(score))
    ...     refractory.learn_one(score)
    >>> out
    [0.5, 0.95, 0.0, 0.0, 0.96]
    """

    __slots__ = ("_quiet", "level", "period")

    def __init__(self, period: int = 50, level: float = 0.99) -> None:
        if period < 0:
            raise ValueError(f"period must be >= 0, got {period}")
        self.period = period
        self.level = level
        self._quiet = 0

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `learn_one` reads: the period and the level that starts it."""
        return (Field("period", self.period), Field("level", self.level))

    def state_fields(self) -> tuple[Field, ...]:
        """Its state as floats, fresh: the muted points left."""
        return (Field("quiet"),)

    @property
    def muted(self) -> bool:
        """Whether scores are muted now."""
        return self._quiet > 0

    def score_one(self, score: float) -> float:
        """The score, or 0.0 while muted."""
        return 0.0 if self._quiet > 0 else score

    def reset(self) -> None:
        """End the quiet period now (the next alarming score starts a new one)."""
        self._quiet = 0

    def learn_one(self, score: float) -> None:
        """Count one point down, or start a quiet period when an unmuted score reaches the level."""
        if self._quiet > 0:
            self._quiet -= 1
        elif self.period and score >= self.level:
            self._quiet = self.period
