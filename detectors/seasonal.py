"""The seasonal views: a daily or weekly profile and how unusual a value is for its time."""

from __future__ import annotations

import math
from array import array

from detectors.gate import ABSURD_SPREADS
from detectors.golden import Direction
from detectors.layout import Field
from detectors.scoring import AnomalyLikelihood

__all__ = ["SeasonalLikelihood", "SeasonalProfile"]


class SeasonalProfile:
    """A series' usual value by time of day: `bins` exponentially weighted means over one
    `period` of seconds, read with linear interpolation between neighbouring bins.

    A value updates the two bins around its time with weights in proportion to their
    closeness; each bin is the weighted mean of what it was given until that weight reaches
    `1 / alpha`, then exponentially weighted (each value's rate `alpha` times its weight).
    `predict_one(t)` is None until the bins around `t` have seen a value. The bins are two
    compact arrays (16 bytes a bin). A peak narrower than a few bins is read flattened.

    >>> profile = SeasonalProfile(bins=24)
    >>> for step in range(288 * 3):  # three days, every 5 minutes: 100 at noon, 0 at midnight
    ...     hour = step / 12 % 24
    ...     profile.learn_one(step * 300.0, 100.0 - abs(hour - 12) * 100.0 / 12)
    >>> round(profile.predict_one(12 * 3600.0)), round(profile.predict_one(6 * 3600.0))
    (95, 51)
    >>> SeasonalProfile().predict_one(0.0) is None
    True
    """

    __slots__ = ("_counts", "_means", "alpha", "bins", "period")

    def __init__(self, period: float = 86400.0, bins: int = 48, alpha: float = 0.1) -> None:
        if not period > 0:
            raise ValueError(f"period must be positive, got {period}")
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
        self.period = period
        self.bins = bins
        self.alpha = alpha
        self._means = array("d", bytes(8 * bins))
        self._counts = array("d", bytes(8 * bins))  # the weight each bin has been given

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `step` reads: the period, the number of bins and the weight."""
        return (Field("period", self.period), Field("bins", self.bins), Field("alpha", self.alpha))

    def state_fields(self) -> tuple[Field, ...]:
        """Its state as floats, fresh: the bins' means, then the weight each was given."""
        return (Field("means", 0.0, self.bins), Field("counts", 0.0, self.bins))

    def _place(self, t: float) -> tuple[int, int, float]:
        """The bins before and after `t` and how far `t` lies from the first, in bins."""
        bins = self.bins
        position = (t % self.period) / self.period * bins - 0.5
        low = math.floor(position)
        weight = position - low
        if low < 0:
            low += bins
        high = low + 1
        return low, (high if high < bins else 0), weight

    def predict_one(self, t: float) -> float | None:
        """The usual value at time `t` (seconds), or None before both its bins have data."""
        if not math.isfinite(t):
            return None
        low, high, weight = self._place(t)
        if not self._counts[low] or (weight > 0.0 and not self._counts[high]):
            return None
        return self._means[low] * (1.0 - weight) + self._means[high] * weight

    def learn_one(self, t: float, x: float) -> None:
        """Fold `x`, seen at time `t`, into the two bins around `t`."""
        self.step(t, x)

    def step(
        self, t: float, x: float, limit: float = math.inf, clip: float = math.inf
    ) -> float | None:
        """`predict_one(t)`, then `learn_one(t, x)` (one placement for both); an `x` more than
        `limit` off the prediction is learned as `clip` off it, on its side."""
        if not (math.isfinite(t) and math.isfinite(x)):
            return None
        low, high, weight = self._place(t)
        return self._step_at(low, high, weight, x, limit, clip)

    def _step_at(
        self, low: int, high: int, weight: float, x: float, limit: float, clip: float
    ) -> float | None:
        means, counts, alpha = self._means, self._counts, self.alpha
        seen_low, seen_high = counts[low], counts[high]
        predicted = None
        if seen_low and (weight == 0.0 or seen_high):
            predicted = means[low] * (1.0 - weight) + means[high] * weight
            if x > predicted + limit:
                x = predicted + clip
            elif x < predicted - limit:
                x = predicted - clip
        # The two bins' updates, written out (this runs for every point of every series).
        share = 1.0 - weight
        if share > 0.0:
            total = counts[low] = seen_low + share
            rate = share / total if total * alpha < 1.0 else alpha * share
            means[low] += rate * (x - means[low])
        if weight > 0.0:
            total = counts[high] = seen_high + weight
            rate = weight / total if total * alpha < 1.0 else alpha * weight
            means[high] += rate * (x - means[high])
        return predicted


class SeasonalLikelihood:
    """How unusual a value is for its time of day (or of the week, with a `period` of a
    week): residuals from a `SeasonalProfile`, standardized by their own exponentially
    weighted spread (`spread_alpha`, plain at first), capped at `cap` and squared, into an
    `AnomalyLikelihood` over `window` points. Counted only in `direction`; silent until
    `min_residuals` residuals have set the spread. Once they have, a value over 1,000 spreads
    off is learned as `cap` spreads off.

    With a `bin_prior`, each bin also keeps the mean square of its own residuals (weighted,
    then exponentially weighted with `bin_alpha`, like the profile's means), and a residual is
    standardized by that bin's spread shrunk towards the overall one: `(n * bin + bin_prior *
    overall) / (n + bin_prior)` after the bin has been given weight `n`. A cycle whose quiet
    hours are flat and whose switches are abrupt then reads a missed switch against the quiet
    hours' small spread, not against the large one that the switches themselves set.

    >>> import math, random
    >>> rng = random.Random(2)
    >>> seasonal = SeasonalLikelihood()
    >>> def daily(t):  # a daily cycle between 0 and 100, sampled every 5 minutes
    ...     return 50.0 + 50.0 * math.sin(2 * math.pi * t / 86400.0) + rng.gauss(0.0, 2.0)
    >>> usual = [seasonal.step(step * 300.0, daily(step * 300.0)) for step in range(288 * 5)]
    >>> max(usual[288 * 2:]) < 0.99
    True
    >>> flat = [seasonal.step(step * 300.0, 50.0) for step in range(288 * 5, 288 * 5 + 72)]
    >>> max(flat) > 0.99  # the cycle stopped: 50 is ordinary overall, not at these times
    True
    """

    __slots__ = (
        "_bin_power",
        "_likelihood",
        "_power",
        "_profile",
        "_residuals",
        "alpha",
        "bin_alpha",
        "bin_prior",
        "bins",
        "cap",
        "direction",
        "long_alpha",
        "min_residuals",
        "period",
        "spread_alpha",
        "tail_df",
        "warmup",
        "window",
    )

    def __init__(
        self,
        period: float = 86400.0,
        bins: int = 48,
        alpha: float = 0.1,
        direction: Direction = "both",
        spread_alpha: float = 0.01,
        cap: float = 6.0,
        window: int = 10,
        min_residuals: int = 50,
        long_alpha: float = 0.0005,
        warmup: int = 100,
        tail_df: int = 2,
        bin_prior: float | None = None,
        bin_alpha: float = 0.05,
    ) -> None:
        if bin_prior is not None and not bin_prior > 0:
            raise ValueError(f"bin_prior must be positive (or None), got {bin_prior}")
        if not 0 < bin_alpha <= 1:
            raise ValueError(f"bin_alpha must lie in (0, 1], got {bin_alpha}")
        if not 0 < spread_alpha < 1:
            raise ValueError(f"spread_alpha must lie in (0, 1), got {spread_alpha}")
        if not cap > 0:
            raise ValueError(f"cap must be positive, got {cap}")
        self.period = period
        self.bins = bins
        self.alpha = alpha
        self.direction = direction
        self.spread_alpha = spread_alpha
        self.cap = cap
        self.window = window
        self.min_residuals = min_residuals
        self.long_alpha = long_alpha
        self.warmup = warmup
        self.tail_df = tail_df
        self.bin_prior = bin_prior
        self.bin_alpha = bin_alpha
        self._profile = SeasonalProfile(period, bins, alpha)
        self._likelihood = AnomalyLikelihood(window, long_alpha, warmup, tail_df)
        self._power = 0.0
        self._residuals = 0
        # Each bin's mean squared residual (weighted by the profile's own bin weights).
        self._bin_power = array("d", bytes(8 * bins)) if bin_prior is not None else None

    @property
    def profile(self) -> SeasonalProfile:
        """The usual value by time of the period (its state is this view's)."""
        return self._profile

    @property
    def likelihood(self) -> AnomalyLikelihood:
        """The likelihood over the residuals' surprise (its state is this view's)."""
        return self._likelihood

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `step` reads besides its profile's and likelihood's (a missing `bin_prior`
        as `has_bin_prior` 0)."""
        return (
            Field("spread_alpha", self.spread_alpha),
            Field("cap", self.cap),
            Field("min_residuals", self.min_residuals),
            Field("has_bin_prior", 0.0 if self.bin_prior is None else 1.0),
            Field("bin_prior", self.bin_prior or 0.0),
            Field("bin_alpha", self.bin_alpha),
        )

    def state_fields(self) -> tuple[Field, ...]:
        """Its own state as floats, fresh (besides its profile's and likelihood's): the
        residual power, the residuals seen, and each bin's residual power (none without a
        `bin_prior`)."""
        bins = self.bins if self.bin_prior is not None else 0
        return (Field("power"), Field("residuals"), Field("bin_power", 0.0, bins))

    def _scale(self, low: int, high: int, weight: float) -> float:
        """The squared spread a residual at this place is read against (before learning it)."""
        bin_power, prior = self._bin_power, self.bin_prior
        if bin_power is None or prior is None:
            return self._power
        counts = self._profile._counts
        given = counts[low] * (1.0 - weight) + counts[high] * weight
        own = bin_power[low] * (1.0 - weight) + bin_power[high] * weight
        return (given * own + prior * self._power) / (given + prior)

    def _surprise(self, residual: float, power: float) -> float:
        if (residual > 0 and self.direction == "down") or (residual < 0 and self.direction == "up"):
            return 0.0
        if power <= 0.0:
            return 0.0
        z = abs(residual) / math.sqrt(power)
        z = z if z < self.cap else self.cap
        return z * z

    def score_one(self, t: float, x: float) -> float:
        """How unusual `x` is at time `t`; does not learn it."""
        expected = self._profile.predict_one(t)
        if expected is None or not math.isfinite(x) or self._residuals <= self.min_residuals:
            return 0.0
        scale = self._scale(*self._profile._place(t))
        return self._likelihood.score_one(self._surprise(x - expected, scale))

    def learn_one(self, t: float, x: float) -> None:
        """Learn `x` at time `t` (non-finite values are ignored)."""
        self._learn(t, x, score=False)

    def step(self, t: float, x: float) -> float:
        """`score_one(t, x)`, then `learn_one(t, x)`."""
        return self._learn(t, x, score=True)

    def _learn(self, t: float, x: float, score: bool) -> float:
        if not (math.isfinite(t) and math.isfinite(x)):
            return 0.0
        out = 0.0
        # Once the spread is known, a value more than `ABSURD_SPREADS` of it off the profile
        # (1e300 from a broken exporter, say) is learned as `cap` spreads off, by the profile
        # and the spread alike: it cannot poison a bin or the spread for days, and a real jump
        # that big is still learned, a few spreads a point. Ordinary residuals, even of tens of
        # spreads, are learned as they are: clipping those (at 6 or 20 spreads, as the golden
        # model does) slowed the profile on real level changes, 1.9 and 1.4 worse on NAB's a.
        power = self._power
        spread = math.sqrt(power)
        known = self._residuals > self.min_residuals
        # No spread yet (or a constant series: no scale at all) means nothing is absurd.
        limit = ABSURD_SPREADS * spread if known and spread > 0.0 else math.inf
        clip = self.cap * spread
        profile = self._profile
        low, high, weight = profile._place(t)
        scale = self._scale(low, high, weight)
        expected = profile._step_at(low, high, weight, x, limit, clip)  # learns x after predicting
        if expected is not None:
            residual = x - expected
            if known:
                surprise = self._surprise(residual, scale)
                if score:
                    out = self._likelihood.step(surprise)
                else:
                    self._likelihood.learn_one(surprise)
            self._residuals += 1
            rate = 1.0 / self._residuals
            rate = rate if rate > self.spread_alpha else self.spread_alpha
            learned = residual if -limit <= residual <= limit else math.copysign(clip, residual)
            square = learned * learned
            if math.isfinite(square):  # near the float limits, keep the old spreads
                self._power = (1.0 - rate) * power + rate * square
                if self._bin_power is not None:
                    self._learn_bins(low, high, weight, square)
        return out

    def _learn_bins(self, low: int, high: int, weight: float, square: float) -> None:
        # Weighted, then exponentially weighted, by the weight the profile has given each bin
        # (this point's share included), as the profile's means are.
        bin_power, counts, alpha = self._bin_power, self._profile._counts, self.bin_alpha
        if bin_power is None:
            return
        share = 1.0 - weight
        if share > 0.0:
            total = counts[low]
            rate = share / total if total * alpha < 1.0 else alpha * share
            bin_power[low] += rate * (square - bin_power[low])
        if weight > 0.0:
            total = counts[high]
            rate = weight / total if total * alpha < 1.0 else alpha * weight
            bin_power[high] += rate * (square - bin_power[high])
