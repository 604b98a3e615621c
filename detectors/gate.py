"""The gate that lets a second opinion's score through only when it is sure."""

from __future__ import annotations

from detectors.layout import Field
from detectors.scoring import one_sided_confidence

__all__ = ["ABSURD_SPREADS", "Gate"]

ABSURD_SPREADS = 1000.0  # a residual further off than this many spreads carries no information


class Gate:
    """Lets a score through only at or above the level of `sigmas` (Student's t, `tail_df`),
    then keeps quiet for `quiet` scores: a second opinion speaks up once per event.

    >>> gate = Gate(sigmas=6.0, quiet=2)
    >>> [gate.step(s) for s in (0.9, 0.99, 0.999, 0.999, 0.999)]
    [0.0, 0.99, 0.0, 0.0, 0.999]
    """

    __slots__ = ("_left", "level", "quiet", "sigmas", "tail_df")

    def __init__(self, sigmas: float = 6.0, quiet: int = 100, tail_df: int = 2) -> None:
        if not sigmas > 0:
            raise ValueError(f"sigmas must be positive, got {sigmas}")
        if quiet < 0:
            raise ValueError(f"quiet must be >= 0, got {quiet}")
        self.sigmas = sigmas
        self.quiet = quiet
        self.tail_df = tail_df
        self.level = one_sided_confidence(sigmas, tail_df)
        self._left = 0

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `step` reads: the level a score must reach and the quiet period after it."""
        return (Field("level", self.level), Field("quiet", self.quiet))

    def state_fields(self) -> tuple[Field, ...]:
        """Its state as floats, fresh: the quiet points left."""
        return (Field("left"),)

    def score_one(self, score: float) -> float:
        """What `step(score)` would return; changes nothing."""
        if self._left > 0 or score < self.level:
            return 0.0
        return score

    def step(self, score: float) -> float:
        """The score if it passes (and start the quiet period), else 0.0."""
        if self._left > 0:
            self._left -= 1
            return 0.0
        if score < self.level:
            return 0.0
        self._left = self.quiet
        return score
