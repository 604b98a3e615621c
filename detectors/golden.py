"""Per-series online detectors for the four golden signals, built on River's running statistics."""

from __future__ import annotations

import math
import pickle
from typing import Any, Literal, get_args

from river import base, stats

from detectors.layout import Field
from detectors.scoring import two_sided_confidence

__all__ = [
    "DIRECTION_CODES",
    "Direction",
    "GoldenSignalDetector",
    "golden_for_signal",
    "series_nbytes",
    "signal_direction",
]

Direction = Literal["up", "down", "both"]
#: A direction as a number, for a model's parameters laid out as floats (`parameter_fields`).
DIRECTION_CODES: dict[Direction, float] = {"both": 0.0, "up": 1.0, "down": 2.0}

# At the ceiling, saturation scores like a residual of this many spreads, i.e. well past
# any sensible threshold (0.99987 with the default tail), whatever the recent history was.
_SIGMAS_AT_CEILING = 6.0


class _WarmUp:
    """Unweighted running means of the warm-up points and of their residual powers, per side."""

    __slots__ = ("above", "below", "level")

    def __init__(self) -> None:
        self.level = stats.Mean()
        self.above = stats.Mean()
        self.below = stats.Mean()


class GoldenSignalDetector(base.Base):
    """Scores one series' next value against what it learned; score in [0, 1].

    The baseline is an exponentially weighted mean (`alpha` is the weight of the newest point).
    There are two spreads: the root of an exponentially weighted mean of squared one-step-ahead
    residuals above the baseline, and the same below it (`spread_alpha`), all River's
    `stats.EWMean` recurrence (written out on the per-point path). Two sides because golden
    signals are skewed: latency has a long upper tail and a sparse error count sits at zero
    with rare ones, and neither should page on its usual shape. On symmetric noise both equal
    the residual standard deviation.

    A score is `two_sided_confidence(z, tail_df)` of the standardized residual
    `z = (x - expected) / spread` on x's side, counted only in `direction`, so one threshold
    means the same tail probability for every signal.

    What the model learns is clipped to `clip_sigmas` spreads: one wild point barely moves the
    baseline, yet a sustained shift widens its side's spread geometrically (at most by a factor
    `1 + spread_alpha * (clip_sigmas**2 - 1)` in variance per point), so the score of a new
    level decays below threshold in a number of points that grows only with the log of the
    shift, and an incident resolves. A spread never drops below `min_relative_spread` of the
    level's magnitude nor below `min_spread`, so a constant series does not alarm on a rounding
    change yet still alarms on a real jump.

    With a `ceiling`, the score is also at least the ceiling pressure: from `ceiling_start`
    of the ceiling up to the ceiling it climbs like a residual of 0 to 6 spreads, so a
    utilisation that crept up slowly still pages near its limit.

    During the first `warmup` points the score is 0. Non-finite values score 0 and are not
    learned.

    >>> import random
    >>> rng = random.Random(42)
    >>> detector = GoldenSignalDetector(direction="up", warmup=30)
    >>> for _ in range(300):
    ...     latency = rng.gauss(0.200, 0.010)
    ...     _ = detector.score_one(latency)
    ...     detector.learn_one(latency)
    >>> round(detector.expected, 2), round(detector.spread_above, 2), detector.n_seen
    (0.2, 0.01, 300)
    >>> detector.score_one(0.270) > 0.999  # a 7-spread latency spike
    True
    >>> detector.score_one(0.130)  # lower latency is good news
    0.0
    >>> near_limit = GoldenSignalDetector(direction="up", ceiling=1.0, warmup=5)
    >>> for step in range(100):
    ...     near_limit.learn_one(0.5 + 0.0047 * step)  # creeps up to 0.965 of the ceiling
    >>> near_limit.score_one(0.97) > 0.99
    True
    """

    def __init__(
        self,
        direction: Direction = "both",
        ceiling: float | None = None,
        warmup: int = 30,
        alpha: float = 0.05,
        spread_alpha: float = 0.01,
        clip_sigmas: float = 4.0,
        tail_df: int = 10,
        min_relative_spread: float = 0.01,
        min_spread: float = 1e-9,
        ceiling_start: float = 0.8,
    ) -> None:
        if direction not in get_args(Direction):
            raise ValueError(f"direction must be one of {get_args(Direction)}, got {direction!r}")
        if ceiling is not None and not (math.isfinite(ceiling) and ceiling > 0):
            raise ValueError(f"ceiling must be a positive finite number, got {ceiling}")
        if warmup < 1:
            raise ValueError(f"warmup must be at least 1, got {warmup}")
        for name, weight in (("alpha", alpha), ("spread_alpha", spread_alpha)):
            if not 0 < weight < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {weight}")
        if not clip_sigmas > 1:
            raise ValueError(f"clip_sigmas must exceed 1, got {clip_sigmas}")
        if tail_df < 1:
            raise ValueError(f"tail_df must be a positive integer, got {tail_df}")
        if not min_relative_spread >= 0:
            raise ValueError(f"min_relative_spread must be >= 0, got {min_relative_spread}")
        if not min_spread > 0:
            raise ValueError(f"min_spread must be positive, got {min_spread}")
        if not 0 <= ceiling_start < 1:
            raise ValueError(f"ceiling_start must lie in [0, 1), got {ceiling_start}")
        self.direction = direction
        self.ceiling = ceiling
        self.warmup = warmup
        self.alpha = alpha
        self.spread_alpha = spread_alpha
        self.clip_sigmas = clip_sigmas
        self.tail_df = tail_df
        self.min_relative_spread = min_relative_spread
        self.min_spread = min_spread
        self.ceiling_start = ceiling_start
        # After the warm-up, the baseline (`_expected`) and the two residual powers are
        # exponentially weighted means: River's `stats.EWMean` recurrence (`a * x + (1 - a) *
        # mean`), written out because through its wrapper an update and a read cost 0.2 µs each
        # and this runs three of each per point; tests/detectors/test_golden.py holds them
        # equal to River's.
        self._power_above = 0.0
        self._power_below = 0.0
        # Plain means over the warm-up points seed the weighted ones: an EWMean started on
        # its first value would give that single point most of the weight for a long time.
        self._warm: _WarmUp | None = _WarmUp()
        self._n_seen = 0
        # The forecast and both floored spreads, refreshed once per learned point.
        self._expected = 0.0
        self._above = self._below = min_spread

    @property
    def expected(self) -> float:
        """The current baseline: the value this series is forecast to take next (0 before data)."""
        return self._expected

    @property
    def spread_above(self) -> float:
        """The floored scale of residuals above the baseline: the unit of an upward z."""
        return self._above

    @property
    def spread_below(self) -> float:
        """The floored scale of residuals below the baseline: the unit of a downward z."""
        return self._below

    @property
    def n_seen(self) -> int:
        """How many finite values the detector has learned."""
        return self._n_seen

    def parameter_fields(self) -> tuple[Field, ...]:
        """What the per-point arithmetic reads: the settings as floats (the direction as its
        `DIRECTION_CODES`, a missing ceiling as `has_ceiling` 0)."""
        return (
            Field("direction", DIRECTION_CODES[self.direction]),
            Field("has_ceiling", 0.0 if self.ceiling is None else 1.0),
            Field("ceiling", self.ceiling or 0.0),
            Field("warmup", self.warmup),
            Field("alpha", self.alpha),
            Field("spread_alpha", self.spread_alpha),
            Field("clip_sigmas", self.clip_sigmas),
            Field("tail_df", self.tail_df),
            Field("min_relative_spread", self.min_relative_spread),
            Field("min_spread", self.min_spread),
            Field("ceiling_start", self.ceiling_start),
        )

    def state_fields(self) -> tuple[Field, ...]:
        """Its state as floats, fresh: the count, the forecast, both floored spreads, both
        residual powers, then the warm-up's three plain means (count and mean each)."""
        return (
            Field("n_seen"),
            Field("expected"),
            Field("spread_above", self.min_spread),
            Field("spread_below", self.min_spread),
            Field("power_above"),
            Field("power_below"),
            Field("warm_level_n"),
            Field("warm_level"),
            Field("warm_above_n"),
            Field("warm_above"),
            Field("warm_below_n"),
            Field("warm_below"),
        )

    def score_one(self, x: float) -> float:
        """How unusual `x` is given what was learned so far, in [0, 1]; does not learn it."""
        if self._n_seen < self.warmup or not math.isfinite(x):
            return 0.0
        residual = x - self._expected
        score = 0.0
        if residual > 0 and self.direction != "down":
            score = two_sided_confidence(residual / self._above, self.tail_df)
        elif residual < 0 and self.direction != "up":
            score = two_sided_confidence(residual / self._below, self.tail_df)
        if self.ceiling is not None:
            score = max(score, self.ceiling_pressure(x))
        return score

    def continues(self, x: float) -> bool:
        """Always false: this model never mutes itself, so an ongoing event scores on its own."""
        return False

    def step(self, x: float, t: float | None = None) -> tuple[float, bool]:
        """`score_one(x)` and `continues(x)` (always false), then `learn_one(x)`; `t` unused."""
        score = self.score_one(x)
        self.learn_one(x)
        return score, False

    def learn_one(self, x: float) -> None:
        """Fold `x` into the baseline and spreads; non-finite values are ignored."""
        if not math.isfinite(x):
            return
        if self._warm is not None:
            self._learn_warm(x, self._warm)
            return
        # The per-point path of every series: conditional expressions rather than min/max
        # calls, and `_refresh` written out (together a third of the cost).
        expected = self._expected
        residual = x - expected
        if residual >= 0:
            limit = self.clip_sigmas * self._above
            clipped = residual if residual < limit else limit
        else:
            limit = -self.clip_sigmas * self._below
            clipped = residual if residual > limit else limit
        power = clipped * clipped
        above, below = self._power_above, self._power_below
        # Near the float limits the square can overflow; better to keep the old spread.
        if math.isfinite(power):
            weight = self.spread_alpha
            # An exact hit is evidence of a tight spread on both sides (constant series).
            if residual >= 0:
                above = self._power_above = weight * power + (1.0 - weight) * above
            if residual <= 0:
                below = self._power_below = weight * power + (1.0 - weight) * below
        level = expected
        if math.isfinite(expected + clipped):
            level = self.alpha * (expected + clipped) + (1.0 - self.alpha) * expected
        self._n_seen += 1
        floor = self.min_relative_spread * abs(level)
        if floor < self.min_spread:
            floor = self.min_spread
        self._expected = level
        spread = math.sqrt(above)
        self._above = spread if spread > floor else floor
        spread = math.sqrt(below)
        self._below = spread if spread > floor else floor

    def _refresh(self, expected: float, power_above: float, power_below: float) -> None:
        floor = max(self.min_spread, self.min_relative_spread * abs(expected))
        self._expected = expected
        self._above = max(math.sqrt(power_above), floor)
        self._below = max(math.sqrt(power_below), floor)

    def _learn_warm(self, x: float, warm: _WarmUp) -> None:
        residual = x - warm.level.get()
        if not math.isfinite(residual):
            return
        if self._n_seen:
            power = residual * residual
            if math.isfinite(power):
                if residual >= 0:
                    warm.above.update(power)
                if residual <= 0:
                    warm.below.update(power)
        warm.level.update(x)
        self._n_seen += 1
        if self._n_seen >= self.warmup:
            # Seed the weighted means (an EWMean takes its first value as it is).
            self._power_above = warm.above.get()
            self._power_below = warm.below.get()
            self._warm = None
        self._refresh(warm.level.get(), warm.above.get(), warm.below.get())

    def export_state(self) -> tuple[dict[str, Any], list[float], list[float] | None]:
        """(settings, learned numbers, warm-up means or None): the whole state as plain values,
        for a checkpoint that must not name classes (see `pipeline.codec`)."""
        settings = {name: getattr(self, name) for name in _SETTINGS}
        numbers = [float(getattr(self, name)) for name in _NUMBERS]
        warm = self._warm
        if warm is None:
            return settings, numbers, None
        means = [warm.level, warm.above, warm.below]
        return settings, numbers, [float(v) for m in means for v in (m.n, m._mean)]

    @classmethod
    def from_state(
        cls, settings: dict[str, Any], numbers: list[float], warm: list[float] | None
    ) -> GoldenSignalDetector:
        """Inverse of `export_state`; the settings are validated as by the constructor."""
        unknown = set(settings) - set(_SETTINGS)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        detector = cls(**settings)
        if len(numbers) != len(_NUMBERS) or (warm is not None and len(warm) != 6):
            raise ValueError("golden state of the wrong length")
        for name, value in zip(_NUMBERS, numbers, strict=True):
            setattr(detector, name, value)
        detector._n_seen = int(numbers[_NUMBERS.index("_n_seen")])
        if warm is None:
            detector._warm = None
        else:
            assert detector._warm is not None
            means = [detector._warm.level, detector._warm.above, detector._warm.below]
            for i, mean in enumerate(means):
                mean.n, mean._mean = warm[2 * i], warm[2 * i + 1]
        return detector

    def ceiling_pressure(self, x: float) -> float:
        """How close `x` is to the ceiling, on the score scale (0 without one or in warm-up)."""
        if self.ceiling is None or self._n_seen < self.warmup or not math.isfinite(x):
            return 0.0
        fill = (x / self.ceiling - self.ceiling_start) / (1.0 - self.ceiling_start)
        if fill <= 0:
            return 0.0
        return two_sided_confidence(_SIGMAS_AT_CEILING * fill, self.tail_df)


# What each golden signal alarms on: a slower or failing service, and traffic that vanishes
# as much as traffic that floods in.
_SIGNAL_DIRECTIONS: dict[str, Direction] = {
    "latency": "up",
    "errors": "up",
    "traffic": "both",
    "saturation": "up",
    "generic": "both",
}


_SETTINGS = (
    "direction",
    "ceiling",
    "warmup",
    "alpha",
    "spread_alpha",
    "clip_sigmas",
    "tail_df",
    "min_relative_spread",
    "min_spread",
    "ceiling_start",
)
_NUMBERS = ("_power_above", "_power_below", "_n_seen", "_expected", "_above", "_below")


def signal_direction(signal: str) -> Direction:
    """Which way a golden signal alarms; `ValueError` for an unknown signal.

    >>> signal_direction("latency"), signal_direction("traffic")
    ('up', 'both')
    """
    direction = _SIGNAL_DIRECTIONS.get(str(signal))
    if direction is None:
        known = ", ".join(sorted(_SIGNAL_DIRECTIONS))
        raise ValueError(f"unknown signal {signal!r}; expected one of {known}")
    return direction


def golden_for_signal(
    signal: str, *, ceiling: float = 1.0, warmup: int = 30
) -> GoldenSignalDetector:
    """A fresh per-point golden model for one signal (`ceiling` is used by saturation only).

    The worker's metric series use `detectors.compiled.detector_for_signal`, built on this
    model; log-line rates use this one directly (see `pipeline.logsignals`).

    >>> golden_for_signal("traffic").direction
    'both'
    >>> golden_for_signal("saturation", ceiling=100.0).ceiling
    100.0
    """
    direction = signal_direction(signal)
    if signal == "saturation":
        return GoldenSignalDetector(direction=direction, ceiling=ceiling, warmup=warmup)
    return GoldenSignalDetector(direction=direction, warmup=warmup)


def series_nbytes(detector: object) -> int:
    """The length of a model's pickle: a size measure for any model class, kept for the
    figures in detectors/README.md. Nothing is stored or read back as a pickle: state
    checkpoints are `pipeline.codec` records (`pipeline.detect.encode_series`), about a third
    larger for the compiled model (its float array in base64). Resident memory is larger than
    either (object headers, dicts), see detectors/README.md.
    """
    return len(pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL))
