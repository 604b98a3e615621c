"""The persistence forecast: a second forecast that stands in for the baseline on smooth series."""

from __future__ import annotations

import math

from detectors.breach import TAME_SPREADS
from detectors.gate import ABSURD_SPREADS
from detectors.golden import Direction
from detectors.layout import Field

__all__ = ["Persistence"]


class Persistence:
    """A second forecast for smooth series: the baseline plus `phi` times the last value's
    deviation from it (a first-order autoregression around the baseline), whose residual
    stands in for the baseline's own while it is much the better forecast.

    The baseline is a slow mean, so on a series that wanders (a temperature, a CPU that
    drifts through the day) its residuals are mostly the wandering, its spread is wide and a
    sudden step hides inside it. When the next value is well predicted by the last one, the
    residual from `expected + phi * (last - expected)` is small in normal times and large at
    a step. `phi` is learned as the exponentially weighted (`alpha`) regression of each
    deviation from the baseline on the one before, held to [0, 1]; the mean squares of both
    forecasts' residuals are kept with the same weight, and `surprise` returns this forecast's
    surprise only while its mean square is below `ratio` times the baseline's (a smooth series),
    standardized by its own spread on each side; otherwise it returns the baseline's surprise
    unchanged. River-style: `surprise` changes nothing, `learn_one` learns.

    >>> import math, random
    >>> rng = random.Random(3)
    >>> persistence = Persistence(ratio=0.2)
    >>> level = 50.0
    >>> for step in range(2000):  # a slow random walk: the last value is the best forecast
    ...     level += rng.gauss(0.0, 0.5)
    ...     persistence.learn_one(level, 50.0)
    >>> persistence.smooth, round(persistence.phi, 2)
    (True, 0.99)
    >>> persistence.surprise(level + 0.5, 50.0, 0.0, "both", 6.0) < 4.0  # a usual move
    True
    >>> persistence.surprise(level + 5.0, 50.0, 0.0, "both", 6.0)  # a step, capped at 6 sigmas
    36.0
    >>> persistence.surprise(level + 5.0, 50.0, 0.0, "down", 6.0)  # the harmless direction
    0.0
    >>> noise = Persistence(ratio=0.2)
    >>> for step in range(2000):  # white noise: the baseline is the better forecast
    ...     noise.learn_one(50.0 + rng.gauss(0.0, 1.0), 50.0)
    >>> noise.smooth, noise.surprise(60.0, 50.0, 7.5, "both", 6.0)  # the baseline's surprise
    (False, 7.5)
    """

    __slots__ = (
        "_above",
        "_base_power",
        "_below",
        "_n",
        "_power",
        "_previous",
        "_sxx",
        "_sxy",
        "alpha",
        "ratio",
    )

    def __init__(self, ratio: float = 0.2, alpha: float = 0.01) -> None:
        if not ratio > 0:
            raise ValueError(f"persistence ratio must be positive, got {ratio}")
        if not 0 < alpha <= 1:
            raise ValueError(f"persistence alpha must lie in (0, 1], got {alpha}")
        self.ratio = ratio
        self.alpha = alpha
        self._previous = math.nan  # the last finite value
        self._n = 0  # residuals learned
        self._sxy = 0.0  # EW mean of (deviation) * (previous deviation)
        self._sxx = 0.0  # EW mean of (previous deviation) ** 2
        self._base_power = 0.0  # EW mean square of the baseline's residual
        self._power = 0.0  # ... and of this forecast's
        self._above = 0.0  # EW mean square of this forecast's residuals above it
        self._below = 0.0  # ... and below it

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `surprise` and `learn_one` read: the smoothness ratio and the weight."""
        return (Field("ratio", self.ratio), Field("alpha", self.alpha))

    def state_fields(self) -> tuple[Field, ...]:
        """Its state as floats, fresh: the last value (NaN before one), the residuals
        learned, `phi`'s two sums, both forecasts' mean squares, this one's on each side."""
        return (
            Field("previous", math.nan),
            Field("n_seen"),
            Field("sxy"),
            Field("sxx"),
            Field("base_power"),
            Field("power"),
            Field("above"),
            Field("below"),
        )

    @property
    def phi(self) -> float:
        """How much of the last value's deviation from the baseline carries to the next."""
        if not self._sxx > 0:
            return 0.0
        phi = self._sxy / self._sxx
        return 0.0 if phi < 0 else 1.0 if phi > 1 else phi

    @property
    def smooth(self) -> bool:
        """Whether this forecast stands in for the baseline now."""
        return self._n > 0 and self._power < self.ratio * self._base_power

    def surprise(
        self, x: float, expected: float, surprise: float, direction: Direction, cap: float
    ) -> float:
        """`x`'s capped squared residual from this forecast in `direction` when the series is
        smooth, else `surprise` (the baseline's); `expected` is the baseline before `x`."""
        if not self.smooth:
            return surprise
        residual = (x - expected) - self.phi * (self._previous - expected)
        power = self._above if residual > 0 else self._below
        if not power > 0:
            return surprise
        if residual > 0 and direction != "down":
            z = residual / math.sqrt(power)
        elif residual < 0 and direction != "up":
            z = -residual / math.sqrt(power)
        else:
            return 0.0
        z = z if z < cap else cap
        return z * z

    def learn_one(self, x: float, expected: float) -> None:
        """Learn `x` (finite) against the baseline's forecast `expected` made before it.

        A value more than `ABSURD_SPREADS` of this forecast's spread off it is learned as
        `TAME_SPREADS` of them off (and remembered so), so one absurd value cannot poison
        the statistics; one whose square overflows is not learned at all.
        """
        previous = self._previous
        if math.isnan(previous):
            self._previous = x
            return
        before = previous - expected
        deviation = x - expected
        phi = self.phi
        residual = deviation - phi * before
        tamed = False
        if self._n > 0 and self._power > 0:
            spread = math.sqrt(self._power)
            if abs(residual) > ABSURD_SPREADS * spread:
                residual = math.copysign(TAME_SPREADS * spread, residual)
                deviation = phi * before + residual
                tamed = True
        square = residual * residual
        cross = deviation * before
        overflows = deviation * deviation + before * before + abs(cross)
        if not (math.isfinite(square) and math.isfinite(overflows)):
            self._previous = expected + deviation if tamed else x
            return
        alpha = self.alpha
        keep = 1.0 - alpha
        if self._n == 0:
            self._base_power = deviation * deviation
            self._power = square
        else:
            self._base_power = keep * self._base_power + alpha * deviation * deviation
            self._power = keep * self._power + alpha * square
        if residual > 0:
            self._above = square if self._above == 0.0 else keep * self._above + alpha * square
        elif residual < 0:
            self._below = square if self._below == 0.0 else keep * self._below + alpha * square
        self._sxy = keep * self._sxy + alpha * cross
        self._sxx = keep * self._sxx + alpha * before * before
        self._n += 1
        self._previous = expected + deviation if tamed else x

    def remember(self, x: float) -> None:
        """Keep `x` (finite) as the last value without learning from it (the baseline's
        warm-up, when it has no forecast yet)."""
        self._previous = x
