"""The range breach: a score of 1 once a value leaves everything seen so far."""

from __future__ import annotations

import math

from detectors.gate import ABSURD_SPREADS
from detectors.golden import Direction
from detectors.layout import Field

__all__ = ["TAME_SPREADS", "RangeBreach"]

TAME_SPREADS = 6.0  # how far off a value beyond `ABSURD_SPREADS` is learned as


class RangeBreach:
    """Flags a value beyond everything the series has shown, by more than a margin of its range.

    A running minimum and maximum, so the range only ever widens; a breach scores 1
    and anything else 0, counted only in `direction`. The margin is `tolerance` of the range,
    or `young / n` of it after `n` values when that is larger: a young series has not shown
    its whole range yet, and its noise sets new records often (about once in `n` points per
    side), so at first only a clear break-out counts.

    A value more than `ABSURD_SPREADS` ranges beyond the range (1e300 from a broken exporter)
    widens it by `TAME_SPREADS` ranges only: it breaches, and one such value cannot put every
    later record out of reach. A shift that big and lasting breaches for a few more points
    while the range grows sevenfold a point, then is learned.

    >>> breach = RangeBreach(tolerance=0.05, young=0.0)
    >>> for x in [10.0, 12.0, 11.0, 14.0]:
    ...     breach.learn_one(x)
    >>> breach.score_one(14.1), breach.score_one(14.3), breach.score_one(9.0)
    (0.0, 1.0, 1.0)
    >>> RangeBreach(direction="up").score_one(-1e9)
    0.0
    >>> young = RangeBreach(young=30.0)  # after 10 values the margin is 3 ranges
    >>> for x in range(10):
    ...     young.learn_one(float(x))
    >>> young.score_one(30.0), young.score_one(40.0)
    (0.0, 1.0)
    >>> broken = RangeBreach(young=0.0)
    >>> for x in [10.0, 20.0] * 50 + [1e300]:
    ...     broken.learn_one(x)
    >>> broken.score_one(1e300), broken.score_one(25.0)  # the range is now 10 to 80
    (1.0, 0.0)
    >>> broken.score_one(81.0)
    1.0
    """

    __slots__ = ("_high", "_low", "_n_seen", "direction", "tolerance", "young")

    def __init__(
        self, tolerance: float = 0.01, direction: Direction = "both", young: float = 30.0
    ) -> None:
        if not tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        if not young >= 0:
            raise ValueError(f"young must be >= 0, got {young}")
        self.tolerance = tolerance
        self.direction = direction
        self.young = young
        # The running minimum and maximum (River's `stats.Min`/`Max` hold the same two floats,
        # behind a method call each way).
        self._low = math.inf
        self._high = -math.inf
        self._n_seen = 0

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `step` reads besides the model's direction: the margin's two settings."""
        return (Field("tolerance", self.tolerance), Field("young", self.young))

    def state_fields(self) -> tuple[Field, ...]:
        """Its state as floats, fresh: the running minimum and maximum, the count."""
        return (Field("low", math.inf), Field("high", -math.inf), Field("n_seen"))

    def score_one(self, x: float) -> float:
        """1.0 when `x` breaks out of the range seen so far (by the margin), else 0.0."""
        if self._n_seen == 0 or not math.isfinite(x):
            return 0.0
        low, high = self._low, self._high
        margin = max(self.tolerance, self.young / self._n_seen) * (high - low)
        if x > high + margin and self.direction != "down":
            return 1.0
        if x < low - margin and self.direction != "up":
            return 1.0
        return 0.0

    def step(self, x: float) -> float:
        """`score_one(x)`, then `learn_one(x)`, in one call (the detector's per-point path)."""
        if not math.isfinite(x):
            return 0.0
        low, high, n = self._low, self._high, self._n_seen
        self._n_seen = n + 1
        self._widen(x)
        if n == 0:
            return 0.0
        margin = max(self.tolerance, self.young / n) * (high - low)
        if (x > high + margin and self.direction != "down") or (
            x < low - margin and self.direction != "up"
        ):
            return 1.0
        return 0.0

    def learn_one(self, x: float) -> None:
        """Widen the range to include `x` (an absurd one only so far); non-finite values are
        ignored."""
        if not math.isfinite(x):
            return
        self._widen(x)
        self._n_seen += 1

    def _widen(self, x: float) -> None:
        low, high = self._low, self._high
        if low <= x <= high:
            return
        span = high - low  # -inf before the first value, 0 while every value was the same
        if x > high:
            self._high = high + TAME_SPREADS * span if x - high > ABSURD_SPREADS * span > 0 else x
        if x < low:
            self._low = low - TAME_SPREADS * span if low - x > ABSURD_SPREADS * span > 0 else x
