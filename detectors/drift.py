"""The drift view: how unusual the recent mean of the signed residual is."""

from __future__ import annotations

from detectors.golden import Direction
from detectors.layout import Field
from detectors.scoring import AnomalyLikelihood

__all__ = ["DriftLikelihood"]


class DriftLikelihood:
    """How unusual the recent mean of the *signed* residual is: a small shift held for a while.

    The input is a standardized residual z (clipped to `cap`, so one spike cannot pass for a
    shift) into an `AnomalyLikelihood` over a `window`-point mean: one-sided on z for an
    upward `direction`, on -z for a downward one, two-sided for both.

    >>> import random
    >>> rng = random.Random(1)
    >>> drift = DriftLikelihood(window=30)
    >>> quiet = [drift.step(rng.gauss(0.0, 1.0)) for _ in range(3000)]
    >>> max(quiet[200:]) < 0.95
    True
    >>> shifted = [drift.step(rng.gauss(2.0, 1.0)) for _ in range(30)]  # 2 spreads, held
    >>> max(shifted) > 0.99
    True
    """

    __slots__ = (
        "_likelihood",
        "_sign",
        "cap",
        "direction",
        "long_alpha",
        "tail_df",
        "warmup",
        "window",
    )

    def __init__(
        self,
        window: int = 30,
        cap: float = 3.0,
        direction: Direction = "both",
        long_alpha: float = 0.0005,
        warmup: int = 100,
        tail_df: int = 2,
    ) -> None:
        if not cap > 0:
            raise ValueError(f"cap must be positive, got {cap}")
        self.window = window
        self.cap = cap
        self.direction = direction
        self.long_alpha = long_alpha
        self.warmup = warmup
        self.tail_df = tail_df
        self._sign = -1.0 if direction == "down" else 1.0
        self._likelihood = AnomalyLikelihood(
            window, long_alpha, warmup, tail_df, two_sided=direction == "both"
        )

    @property
    def likelihood(self) -> AnomalyLikelihood:
        """The likelihood over the clipped residuals' mean (its state is this view's)."""
        return self._likelihood

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `step` reads besides its likelihood's: the clip and the residual's sign (-1
        for a downward direction)."""
        return (Field("cap", self.cap), Field("sign", self._sign))

    def _clip(self, z: float) -> float:
        cap = self.cap
        z *= self._sign
        return cap if z > cap else -cap if z < -cap else z

    def score_one(self, z: float) -> float:
        """How unusual the drift is with `z` counted; does not learn it."""
        return self._likelihood.score_one(self._clip(z))

    def learn_one(self, z: float) -> None:
        """Learn `z` (non-finite values are ignored)."""
        self._likelihood.learn_one(self._clip(z))

    def step(self, z: float) -> float:
        """`score_one(z)`, then `learn_one(z)`."""
        return self._likelihood.step(self._clip(z))
