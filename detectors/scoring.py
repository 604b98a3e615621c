"""Turns standardized residuals into calibrated scores in [0, 1] that one threshold can cut:
per point (`two_sided_confidence`), or over a recent window against the series' own history
(`AnomalyLikelihood`)."""

from __future__ import annotations

import math
from array import array

from detectors.layout import Field

__all__ = [
    "AnomalyLikelihood",
    "one_sided_confidence",
    "t_confidence",
    "two_sided_confidence",
]


def two_sided_confidence(t: float, df: int) -> float:
    """P(|T| <= |t|) for Student's t with `df` degrees of freedom: 1 minus the two-sided p-value.

    A detector's score is this confidence, so a threshold of 0.99 means "a residual this large
    happens less than once in a hundred points under the learned spread". Student's t rather than
    the normal law because the spread is itself estimated, and telemetry residuals have heavier
    tails than Gaussian noise; small `df` is more conservative.

    The closed forms for integer `df` (Abramowitz and Stegun 26.7.3 and 26.7.4) keep this a few
    multiplications, with no SciPy call on the per-point path.

    >>> round(two_sided_confidence(1.0, 1), 6)  # Cauchy: half the mass lies within 1
    0.5
    >>> round(two_sided_confidence(3.169, 10), 4)  # the 99% two-sided quantile of t(10)
    0.99
    >>> two_sided_confidence(0.0, 10)
    0.0
    """
    if df < 1:
        raise ValueError(f"df must be a positive integer, got {df}")
    return t_confidence(t, df)


def t_confidence(t: float, df: int) -> float:
    """`two_sided_confidence` without the check of `df`: the closed forms themselves, plain
    arithmetic that `detectors.compiled` compiles as it is (so there is one copy of them).

    >>> t_confidence(0.0, 2)
    0.0
    """
    if math.isnan(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    cos2 = cos * cos
    if df % 2 == 0:
        # sin(theta) * sum_{k < df/2} [(1*3*..*(2k-1)) / (2*4*..*2k)] * cos(theta)^(2k)
        term = 1.0
        total = 1.0
        for k in range(1, df // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        confidence = sin * total
    else:
        # (2/pi) * (theta + sin*cos * sum_{k < (df-1)/2} [(2*4*..*2k) / (3*5*..*(2k+1))] cos^(2k))
        series = 0.0
        if df > 1:
            term = 1.0
            series = 1.0
            for k in range(1, (df - 1) // 2):
                term *= cos2 * (2 * k) / (2 * k + 1)
                series += term
        confidence = 2.0 / math.pi * (theta + sin * cos * series)
    return min(max(confidence, 0.0), 1.0)


def one_sided_confidence(t: float, df: int) -> float:
    """P(T <= t) for Student's t with integer `df`: the confidence that t is unusually high.

    >>> one_sided_confidence(0.0, 2), round(one_sided_confidence(6.965, 2), 4)
    (0.5, 0.99)
    """
    if df == 2 and math.isfinite(t):
        # The closed form for two degrees of freedom (the default tail), a quarter of the cost.
        return 0.5 + 0.5 * t / math.sqrt(t * t + 2.0)
    half = 0.5 * two_sided_confidence(t, df)
    return 0.5 + half if t >= 0 else 0.5 - half


class AnomalyLikelihood:
    """How unusual the recent mean of a surprise signal is against that signal's long history.

    The short-term mean is the mean of the last `short_window` surprises. Its long-term mean
    and variance follow one incremental recurrence (West 1979; Finch 2009) with weight
    `max(alpha, 1 / n)` for the n-th short mean: the plain mean and population variance while
    fewer than `1 / alpha` have been seen, then exponentially weighted ones that start from
    them (a weighted mean started on its first value would let that value weigh for
    thousands of points). The
    score is `one_sided_confidence(z, tail_df)` of the short mean (counting the new surprise)
    standardized by the long-term mean and spread: Student's t with few degrees of freedom,
    because short means of surprise are heavy tailed (a Gaussian reading would call a z of 5
    one in three million, and on real series it is not). 0 for the first `warmup` surprises.
    With `two_sided`, a short mean unusually low counts as much as one unusually high (the
    score reads |z|), for a signal whose either side is news.

    >>> import random
    >>> rng = random.Random(3)
    >>> likelihood = AnomalyLikelihood(warmup=50)
    >>> for _ in range(2000):
    ...     surprise = rng.expovariate(1.0)  # the usual roughness of this series
    ...     likelihood.learn_one(surprise)
    >>> likelihood.score_one(1.0) < 0.5
    True
    >>> round(likelihood.z_one(25.0), 1)  # a burst far beyond its usual roughness
    7.6
    >>> likelihood.score_one(25.0) > 0.99
    True
    """

    __slots__ = (
        "_mean",
        "_n_seen",
        "_next",
        "_power",
        "_recent",
        "_spread",
        "_sum",
        "alpha",
        "min_spread",
        "short_window",
        "tail_df",
        "two_sided",
        "warmup",
    )

    def __init__(
        self,
        short_window: int = 10,
        alpha: float = 0.0005,
        warmup: int = 100,
        tail_df: int = 2,
        min_spread: float = 1e-6,
        two_sided: bool = False,
    ) -> None:
        if short_window < 1:
            raise ValueError(f"short_window must be at least 1, got {short_window}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        if warmup < 1:
            raise ValueError(f"warmup must be at least 1, got {warmup}")
        if tail_df < 1:
            raise ValueError(f"tail_df must be a positive integer, got {tail_df}")
        if not min_spread > 0:
            raise ValueError(f"min_spread must be positive, got {min_spread}")
        self.short_window = short_window
        self.alpha = alpha
        self.warmup = warmup
        self.tail_df = tail_df
        self.min_spread = min_spread
        self.two_sided = two_sided
        # The last `short_window - 1` surprises (with the new one they make the short mean) in
        # a ring of 8-byte floats, and their running sum, summed afresh each time the ring
        # wraps so rounding cannot pile up.
        self._recent = array("d")
        self._next = 0
        self._sum = 0.0
        self._n_seen = 0
        # The long-term mean, power (variance) and spread of short means.
        self._mean = 0.0
        self._power = 0.0
        self._spread = min_spread

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `step` reads: the ring's capacity (`short_window - 1`), the warm-up, the
        weight, the spread's floor, whether it is two-sided (1) and the tail's df."""
        return (
            Field("capacity", self.short_window - 1),
            Field("warmup", self.warmup),
            Field("alpha", self.alpha),
            Field("min_spread", self.min_spread),
            Field("two_sided", 1.0 if self.two_sided else 0.0),
            Field("tail_df", self.tail_df),
        )

    def state_fields(self) -> tuple[Field, ...]:
        """Its state as floats, fresh: the ring's fill, next slot and sum, the count, the
        long-term mean, power and spread, then the ring of recent surprises."""
        return (
            Field("length"),
            Field("next"),
            Field("sum"),
            Field("n_seen"),
            Field("mean"),
            Field("power"),
            Field("spread", self.min_spread),
            Field("recent", 0.0, self.short_window - 1),
        )

    @property
    def n_seen(self) -> int:
        """How many surprises were learned."""
        return self._n_seen

    @property
    def long_mean(self) -> float:
        """The long-term mean of short means."""
        return self._mean

    @property
    def long_spread(self) -> float:
        """The long-term standard deviation of short means (at least `min_spread`)."""
        return self._spread

    @property
    def ready(self) -> bool:
        """Whether the warm-up is over and scores are live."""
        return self._n_seen >= self.warmup

    def short_mean(self, surprise: float) -> float:
        """The mean of the last `short_window` surprises, the new one included, not learned."""
        return (self._sum + surprise) / (len(self._recent) + 1)

    def z_one(self, surprise: float) -> float:
        """The short mean standardized by the long-term mean and spread of short means."""
        return (self.short_mean(surprise) - self._mean) / self._spread

    def score_one(self, surprise: float) -> float:
        """`one_sided_confidence` of `z_one`, in [0, 1]; 0 in warm-up or for a non-finite input."""
        if self._n_seen < self.warmup or not math.isfinite(surprise):
            return 0.0
        z = self.z_one(surprise)
        return one_sided_confidence(abs(z) if self.two_sided else z, self.tail_df)

    def learn_one(self, surprise: float) -> None:
        """Fold a surprise into the short window and its short mean into the long history."""
        if math.isfinite(surprise):
            self._learn(surprise, self.short_mean(surprise))

    def step(self, surprise: float) -> float:
        """`score_one(surprise)`, then `learn_one(surprise)`: one short mean for both."""
        if not math.isfinite(surprise):
            return 0.0
        mean = (self._sum + surprise) / (len(self._recent) + 1)  # `short_mean`, written out
        score = 0.0
        if self._n_seen >= self.warmup:
            z = (mean - self._mean) / self._spread
            if self.two_sided and z < 0:
                z = -z
            score = one_sided_confidence(z, self.tail_df)
        self._learn(surprise, mean)
        return score

    def _learn(self, surprise: float, mean: float) -> None:
        recent = self._recent
        if len(recent) < self.short_window - 1:
            recent.append(surprise)
            self._sum += surprise
        elif recent:
            at = self._next
            self._sum += surprise - recent[at]
            recent[at] = surprise
            at += 1
            if at == len(recent):
                at = 0
                self._sum = sum(recent)
            self._next = at
        # One recurrence for both phases, a few multiplications on the per-point path; a test
        # holds its plain phase to River's `stats.Var`.
        n = self._n_seen + 1
        weight = 1.0 / n if n * self.alpha < 1.0 else self.alpha
        deviation = mean - self._mean
        increment = weight * deviation
        self._mean += increment
        power = self._power = (1.0 - weight) * (self._power + deviation * increment)
        spread = math.sqrt(power) if power > 0.0 else 0.0
        self._spread = spread if spread > self.min_spread else self.min_spread
        self._n_seen += 1
