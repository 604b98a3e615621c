"""The likelihood detector: the point model, breach, refractory period and views together."""

# About 540 lines for one class (`LikelihoodDetector`): its steps read in order in one place;
# each part it combines lives in a module of its own.

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from river import base

from detectors.breach import RangeBreach
from detectors.drift import DriftLikelihood
from detectors.gate import Gate
from detectors.golden import Direction, GoldenSignalDetector
from detectors.layout import Field
from detectors.novelty import Novelty
from detectors.persistence import Persistence
from detectors.refractory import Refractory
from detectors.scoring import AnomalyLikelihood, one_sided_confidence
from detectors.seasonal import SeasonalLikelihood

__all__ = ["PARTS", "WEEK", "LikelihoodDetector", "Part", "Parts"]

WEEK = 7 * 86400.0

# The part of `LikelihoodDetector` whose opinion a score is (`last_part`): the point model
# (its likelihood, or, while that warms up, the golden model's own score, ceiling pressure
# included), a range breach, a view, or the ceiling pressure.
Part = Literal["point", "breach", "drift", "daily", "weekly", "novelty", "ceiling"]
PARTS: tuple[Part, ...] = get_args(Part)


@dataclass(frozen=True, slots=True)
class Parts:
    """A `LikelihoodDetector`'s parts (None: left out by its settings), for reading their
    `parameter_fields()` and `state_fields()` (`detectors.compiled` lays itself out from them)."""

    golden: GoldenSignalDetector
    likelihood: AnomalyLikelihood
    breach: RangeBreach | None
    refractory: Refractory
    quiet: Refractory
    persistence: Persistence | None
    drift: DriftLikelihood | None
    drift_gate: Gate
    daily: SeasonalLikelihood | None
    daily_gate: Gate
    weekly: SeasonalLikelihood | None
    weekly_gate: Gate
    novelty: Novelty | None
    novelty_gate: Gate


class LikelihoodDetector(base.Base):
    """One series' model: golden residuals turned into an anomaly likelihood, with range
    breaches and a refractory period; score in [0, 1]. The worker runs it compiled
    (`detectors.compiled.CompiledLikelihood`, held equal to this one by tests).

    1. A `GoldenSignalDetector` (baseline `alpha`, spreads `spread_alpha`, `ceiling`) gives
       each point's standardized residual z on its side; its surprise is
       `min(z, surprise_cap) ** 2`, counted only in `direction` (0 in the harmless one). On a
       smooth series a `Persistence` forecast (`persistence_ratio`, `persistence_alpha`; None
       leaves it out) stands in: the surprise is then its residual's, on its own spreads.
    2. An `AnomalyLikelihood` scores the recent mean of surprise against its long history.
    3. A `RangeBreach` (`range_tolerance`, None to leave it out) scores 1 once the likelihood
       is live and the value leaves everything seen so far.
    4. A `Refractory` mutes `refractory` points after a score reaches the likelihood score of
       `refractory_sigmas` (`refractory=0` to leave it out), so an event alarms once. A range
       breach is never muted, and starts the quiet period again: an event that escalates
       past its own record alarms again, and a benign record does not hide a real spike.
       After an alarm from any part (a score at that level, the views' included), every
       part but a range breach keeps quiet for `quiet` points (`quiet=0` to leave it out):
       the point model and the views each mute only themselves, and one event seen by two
       of them would otherwise alarm twice.
    5. Until the likelihood has `likelihood_warmup` surprises (about `warmup +
       likelihood_warmup` points), the score is the golden model's own per-point score
       (`early_scores`), so a new series can alarm after `warmup` points.
    6. With a `ceiling`, the score is at least the golden ceiling pressure, never muted: a
       series pinned near its ceiling keeps alarming.
    7. Three second opinions (`detectors.views`), each behind its own `Gate` (it counts at
       `*_sigmas` or more, then keeps quiet `*_quiet` points), raise the score when sure:
       a `DriftLikelihood` over the signed golden residual (`drift_window` points, None to
       leave it out) for a small shift held for a while, and, when points come with their
       time `t`, two `SeasonalLikelihood`s over `seasonal_window` points: one for a value
       wrong for its time of day (`seasonal_bins` per `seasonal_period` seconds, each bin
       with its own residual spread shrunk by `seasonal_bin_prior`), one for a value wrong
       for its time of the week (`weekly_bins` a week, one spread); None leaves a view out.
       A fourth, `Novelty` (`novelty_bins`, after `novelty_after` values), alarms (1.0, then
       quiet `novelty_quiet` points) on a value on the alarming side of the baseline that
       falls where the series has never been, inside its range; None leaves it out.
    8. Scores are reported on a scale where the refractory level is `alarm_level` (0.99): a live
       score `p` becomes `p ** k`, with `k` such that the refractory level maps to
       `alarm_level` (monotone, so 0 and 1 stay put and no ranking changes). The detect
       stage's threshold 0.99 then cuts where the model's own alarms (and quiet periods)
       begin; `alarm_level=None` keeps the likelihood's scale.

    The score is what a threshold cuts and what NAB measures: it marks an event's onset. A
    stage that must know whether an event is still going on (the correlator holds incidents
    until a series has been anomalous for a while) asks `continues(x)`: true while the score
    is muted after an alarm and `x` itself still lies `hold_sigmas` or more beyond the
    baseline in the alarming direction.

    Memory is constant: a few running statistics, the short windows and the daily profile.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = LikelihoodDetector()
    >>> scores, going_on = [], []
    >>> for step in range(1200):
    ...     noise = rng.gauss(100.0, 5.0)
    ...     value = 165.0 - (step - 1000) if 1000 <= step < 1010 else noise  # a fading burst
    ...     scores.append(detector.score_one(value))
    ...     going_on.append(detector.continues(value))
    ...     detector.learn_one(value)
    >>> sum(s >= 0.99 for s in scores[130:1000])  # noise, once live: a rare new record
    1
    >>> scores[1000]  # the burst is new ground for this series
    1.0
    >>> max(scores[1001:1031])  # muted for 30 points: the same event does not alarm again
    0.0
    >>> going_on[1001:1012]  # ... yet it is still going on until the burst ends
    [True, True, True, True, True, True, True, True, True, False, False]
    """

    def __init__(
        self,
        direction: Direction = "both",
        ceiling: float | None = None,
        warmup: int = 30,
        alpha: float = 0.01,
        spread_alpha: float = 0.01,
        surprise_cap: float = 6.0,
        short_window: int = 10,
        long_alpha: float = 0.0005,
        likelihood_warmup: int = 100,
        tail_df: int = 2,
        range_tolerance: float | None = 0.01,
        refractory: int = 30,
        refractory_sigmas: float = 6.0,
        quiet: int = 100,
        alarm_level: float | None = 0.99,
        hold_sigmas: float = 4.0,
        early_scores: bool = True,
        drift_window: int | None = 30,
        drift_cap: float = 3.0,
        drift_sigmas: float = 6.0,
        drift_quiet: int = 100,
        seasonal_bins: int | None = 48,
        seasonal_period: float = 86400.0,
        seasonal_sigmas: float = 7.0,
        seasonal_quiet: int = 300,
        seasonal_window: int = 30,
        seasonal_bin_prior: float | None = 10.0,
        weekly_bins: int | None = 84,
        weekly_sigmas: float = 8.0,
        weekly_quiet: int = 300,
        persistence_ratio: float | None = 0.2,
        persistence_alpha: float = 0.01,
        novelty_bins: int | None = 64,
        novelty_after: int = 1000,
        novelty_quiet: int = 1000,
    ) -> None:
        if not surprise_cap > 0:
            raise ValueError(f"surprise_cap must be positive, got {surprise_cap}")
        if quiet < 0:
            raise ValueError(f"quiet must be >= 0, got {quiet}")
        if novelty_quiet < 0:
            raise ValueError(f"novelty_quiet must be >= 0, got {novelty_quiet}")
        if alarm_level is not None and not 0 < alarm_level < 1:
            raise ValueError(f"alarm_level must lie in (0, 1), got {alarm_level}")
        if not 0 < hold_sigmas <= surprise_cap:
            raise ValueError(
                f"hold_sigmas must lie in (0, surprise_cap={surprise_cap}], got {hold_sigmas}"
            )
        self.direction = direction
        self.ceiling = ceiling
        self.warmup = warmup
        self.alpha = alpha
        self.spread_alpha = spread_alpha
        self.surprise_cap = surprise_cap
        self.short_window = short_window
        self.long_alpha = long_alpha
        self.likelihood_warmup = likelihood_warmup
        self.tail_df = tail_df
        self.range_tolerance = range_tolerance
        self.refractory = refractory
        self.refractory_sigmas = refractory_sigmas
        self.quiet = quiet
        self.alarm_level = alarm_level
        self.hold_sigmas = hold_sigmas
        self.early_scores = early_scores
        self.drift_window = drift_window
        self.drift_cap = drift_cap
        self.drift_sigmas = drift_sigmas
        self.drift_quiet = drift_quiet
        self.seasonal_bins = seasonal_bins
        self.seasonal_period = seasonal_period
        self.seasonal_sigmas = seasonal_sigmas
        self.seasonal_quiet = seasonal_quiet
        self.seasonal_window = seasonal_window
        self.seasonal_bin_prior = seasonal_bin_prior
        self.weekly_bins = weekly_bins
        self.weekly_sigmas = weekly_sigmas
        self.weekly_quiet = weekly_quiet
        self.persistence_ratio = persistence_ratio
        self.persistence_alpha = persistence_alpha
        self.novelty_bins = novelty_bins
        self.novelty_after = novelty_after
        self.novelty_quiet = novelty_quiet
        self._novelty = Novelty(novelty_bins, novelty_after) if novelty_bins is not None else None
        self._novelty_gate = Gate(refractory_sigmas, novelty_quiet, tail_df)
        self._persistence = (
            Persistence(persistence_ratio, persistence_alpha)
            if persistence_ratio is not None
            else None
        )
        drift = (
            DriftLikelihood(
                drift_window, drift_cap, direction, long_alpha, likelihood_warmup, tail_df
            )
            if drift_window is not None
            else None
        )
        seasonal = (
            SeasonalLikelihood(
                seasonal_period,
                seasonal_bins,
                direction=direction,
                window=seasonal_window,
                tail_df=tail_df,
                bin_prior=seasonal_bin_prior,
            )
            if seasonal_bins is not None
            else None
        )
        weekly = (
            SeasonalLikelihood(
                WEEK, weekly_bins, direction=direction, window=seasonal_window, tail_df=tail_df
            )
            if weekly_bins is not None
            else None
        )
        # The views and their gates in one tuple (fewer attributes, and one place to walk).
        self._views: tuple[
            DriftLikelihood | None,
            Gate,
            SeasonalLikelihood | None,
            Gate,
            SeasonalLikelihood | None,
            Gate,
        ] = (
            drift,
            Gate(drift_sigmas, drift_quiet, tail_df),
            seasonal,
            Gate(seasonal_sigmas, seasonal_quiet, tail_df),
            weekly,
            Gate(weekly_sigmas, weekly_quiet, tail_df),
        )
        self._golden = GoldenSignalDetector(
            direction=direction,
            ceiling=ceiling,
            warmup=warmup,
            alpha=alpha,
            spread_alpha=spread_alpha,
        )
        self._likelihood = AnomalyLikelihood(short_window, long_alpha, likelihood_warmup, tail_df)
        self._range = (
            RangeBreach(range_tolerance, direction) if range_tolerance is not None else None
        )
        level = one_sided_confidence(refractory_sigmas, tail_df)
        self._refractory = Refractory(refractory, level)
        self._quiet = Refractory(quiet, level)  # the same clock over the whole model's score
        # The power that takes the refractory level to `alarm_level` (1: the scale as it is).
        self._power = 1.0 if alarm_level is None else math.log(alarm_level) / math.log(level)
        # Which part gave `step`'s last score ("" when it was 0): for reading a run, not used.
        self.last_part: Part | Literal[""] = ""

    @property
    def expected(self) -> float:
        """The baseline forecast of the next value."""
        return self._golden.expected

    def parts(self) -> Parts:
        """The parts this model is made of, as they are now."""
        drift, drift_gate, daily, daily_gate, weekly, weekly_gate = self._views
        return Parts(
            golden=self._golden,
            likelihood=self._likelihood,
            breach=self._range,
            refractory=self._refractory,
            quiet=self._quiet,
            persistence=self._persistence,
            drift=drift,
            drift_gate=drift_gate,
            daily=daily,
            daily_gate=daily_gate,
            weekly=weekly,
            weekly_gate=weekly_gate,
            novelty=self._novelty,
            novelty_gate=self._novelty_gate,
        )

    def parameter_fields(self) -> tuple[Field, ...]:
        """What the whole model's step reads besides its parts': the surprise cap, the
        `continues` level, whether young series score early (1), the alarm-level power."""
        return (
            Field("surprise_cap", self.surprise_cap),
            Field("hold_sigmas", self.hold_sigmas),
            Field("early_scores", 1.0 if self.early_scores else 0.0),
            Field("power", self._power),
        )

    @property
    def n_seen(self) -> int:
        """How many finite values the detector has learned."""
        return self._golden.n_seen

    @property
    def live(self) -> bool:
        """Whether the likelihood has warmed up and scores are its own (not the early ones)."""
        return self._likelihood.ready

    def surprise(self, x: float) -> float:
        """The capped squared standardized residual of `x` in the alarming direction, from
        the persistence forecast on a smooth series, else from the baseline."""
        golden = self._golden
        baseline = self.baseline_surprise(x)
        if self._persistence is None or golden.n_seen < self.warmup or not math.isfinite(x):
            return baseline
        return self._persistence.surprise(
            x, golden.expected, baseline, self.direction, self.surprise_cap
        )

    def baseline_surprise(self, x: float) -> float:
        """The capped squared standardized residual of `x` from the baseline, in the alarming
        direction: what `continues` holds an event by (the persistence forecast catches up
        with a step at once; the baseline, like the event, takes its time)."""
        golden = self._golden
        if golden.n_seen < self.warmup or not math.isfinite(x):
            return 0.0
        residual = x - golden.expected
        if residual > 0 and self.direction != "down":
            z = residual / golden.spread_above
        elif residual < 0 and self.direction != "up":
            z = -residual / golden.spread_below
        else:
            return 0.0
        z = min(z, self.surprise_cap)
        return z * z

    def residual_z(self, x: float) -> float:
        """`x`'s signed standardized residual from the golden baseline (0 in its warm-up)."""
        golden = self._golden
        if golden.n_seen < self.warmup or not math.isfinite(x):
            return 0.0
        residual = x - golden.expected
        return residual / (golden.spread_above if residual > 0 else golden.spread_below)

    def score_one(self, x: float, t: float | None = None) -> float:
        """How unusual `x` (at time `t`, seconds, if known) is, in [0, 1]; does not learn it."""
        if not math.isfinite(x):
            return 0.0
        _, score, breach = self._assess(x)
        if self._refractory.muted and not breach:
            score = 0.0
        drift, drift_gate, seasonal, seasonal_gate, weekly, weekly_gate = self._views
        if drift is not None and self._golden.n_seen >= self.warmup:
            score = max(score, drift_gate.score_one(drift.score_one(self.residual_z(x))))
        if seasonal is not None and t is not None:
            score = max(score, seasonal_gate.score_one(seasonal.score_one(t, x)))
        if weekly is not None and t is not None:
            score = max(score, weekly_gate.score_one(weekly.score_one(t, x)))
        score = max(score, self._novelty_gate.score_one(self._novel(x, breach)))
        if self._likelihood.ready:
            if self._quiet.muted and not breach:
                score = 0.0
            score = score**self._power
        if self.ceiling is not None:
            score = max(score, self._golden.ceiling_pressure(x))
        return score

    def continues(self, x: float) -> bool:
        """Whether `x` carries on the event whose alarm muted the score; does not learn it."""
        if not self._refractory.muted or not math.isfinite(x):
            return False
        return self.baseline_surprise(x) >= self.hold_sigmas * self.hold_sigmas

    def step(self, x: float, t: float | None = None) -> tuple[float, bool]:
        """`score_one(x, t)` and `continues(x)`, then `learn_one(x, t)`, in one pass (the
        stage's call).

        Each part scores and learns in one call, so nothing is computed twice; a test holds
        this equal to the three calls. `last_part` then names the part whose opinion the
        score is (`PARTS`; the earlier part on a tie), or is "" for a score of 0.
        """
        if not math.isfinite(x):
            self.last_part = ""
            return 0.0, False
        golden = self._golden
        learned = golden.n_seen >= self.warmup
        surprise = signed = 0.0
        if learned:  # `residual_z(x)` and `surprise(x)`, written out
            residual = x - golden.expected
            if residual > 0:
                signed = residual / golden.spread_above
                if self.direction != "down":
                    z = signed if signed < self.surprise_cap else self.surprise_cap
                    surprise = z * z
            else:
                signed = residual / golden.spread_below
                if residual < 0 and self.direction != "up":
                    z = -signed if -signed < self.surprise_cap else self.surprise_cap
                    surprise = z * z
        held = surprise  # the baseline's: `continues` reads it
        persistence = self._persistence
        if persistence is not None:
            if learned:
                expected = golden.expected
                surprise = persistence.surprise(
                    x, expected, surprise, self.direction, self.surprise_cap
                )
                persistence.learn_one(x, expected)
            else:
                persistence.remember(x)
        likelihood = self._likelihood
        live = likelihood.ready
        # The likelihood learns once the golden model is warm; it scores once it is live.
        score = likelihood.step(surprise) if learned else 0.0
        if not live:
            score = golden.score_one(x) if self.early_scores else 0.0
        breach = False
        part: Part = "point"
        # The range learns every value; its breach counts once the likelihood is live.
        if self._range is not None and self._range.step(x) >= 1.0 and live:
            score, breach, part = 1.0, True, "breach"
        refractory = self._refractory
        muted = refractory.muted
        out = 0.0 if muted and not breach else score
        going_on = muted and held >= self.hold_sigmas * self.hold_sigmas
        if live:
            if breach:
                refractory.reset()
            refractory.learn_one(score)
        drift, drift_gate, seasonal, seasonal_gate, weekly, weekly_gate = self._views
        if drift is not None and learned:
            opinion = drift_gate.step(drift.step(signed))
            if opinion > out:
                out, part = opinion, "drift"
        if seasonal is not None and t is not None:
            opinion = seasonal_gate.step(seasonal.step(t, x))
            if opinion > out:
                out, part = opinion, "daily"
        if weekly is not None and t is not None:
            opinion = weekly_gate.step(weekly.step(t, x))
            if opinion > out:
                out, part = opinion, "weekly"
        novelty = self._novelty
        if novelty is not None:
            fresh = novelty.step(x)
            counts = live and not breach and self._on_alarming_side(signed)
            opinion = self._novelty_gate.step(fresh if counts else 0.0)
            if opinion > out:
                out, part = opinion, "novelty"
        if live:
            quiet = self._quiet
            if breach:
                quiet.reset()
            elif quiet.muted:
                out = 0.0
            quiet.learn_one(out)
            out = out**self._power
        if self.ceiling is not None:
            pressure = golden.ceiling_pressure(x)
            if pressure > out:
                out, part = pressure, "ceiling"
        self.last_part = part if out > 0.0 else ""
        golden.learn_one(x)
        return out, going_on

    def learn_one(self, x: float, t: float | None = None) -> None:
        """Learn `x` (at time `t`, if known) into every part; non-finite values are ignored."""
        if not math.isfinite(x):
            return
        drift, drift_gate, seasonal, seasonal_gate, weekly, weekly_gate = self._views
        opinion = 0.0
        if drift is not None and self._golden.n_seen >= self.warmup:
            z = self.residual_z(x)
            opinion = drift_gate.step(drift.score_one(z))
            drift.learn_one(z)
        for view, gate in ((seasonal, seasonal_gate), (weekly, weekly_gate)):
            if view is not None and t is not None:
                opinion = max(opinion, gate.step(view.score_one(t, x)))
                view.learn_one(t, x)
        surprise, score, breach = self._assess(x)
        opinion = max(opinion, self._novelty_gate.step(self._novel(x, breach)))
        if self._novelty is not None:
            self._novelty.learn_one(x)
        if self._likelihood.ready:
            refractory, quiet = self._refractory, self._quiet
            out = max(0.0 if refractory.muted and not breach else score, opinion)
            if breach:
                refractory.reset()
                quiet.reset()
            refractory.learn_one(score)
            quiet.learn_one(out)
        if self._golden.n_seen >= self.warmup:
            self._likelihood.learn_one(surprise)
        if self._range is not None:
            self._range.learn_one(x)
        persistence = self._persistence
        if persistence is not None:
            if self._golden.n_seen >= self.warmup:
                persistence.learn_one(x, self._golden.expected)
            else:
                persistence.remember(x)
        self._golden.learn_one(x)

    def _novel(self, x: float, breach: bool) -> float:
        """The `Novelty` view's score for `x` (before its gate): 0 unless the likelihood is
        live, `x` breaks no range and lies on the alarming side of the baseline."""
        novelty = self._novelty
        if novelty is None or breach or not self._likelihood.ready:
            return 0.0
        if self.direction != "both" and not self._on_alarming_side(self.residual_z(x)):
            return 0.0
        return novelty.score_one(x)

    def _on_alarming_side(self, signed: float) -> bool:
        """Whether a signed residual lies on the side `direction` alarms on (both: always)."""
        if self.direction == "both":
            return True
        return signed > 0 if self.direction == "up" else signed < 0

    def _assess(self, x: float) -> tuple[float, float, bool]:
        """`x`'s surprise, unmuted score and whether it breaks the range; changes nothing."""
        surprise = self.surprise(x)
        likelihood = self._likelihood
        breach = False
        if likelihood.ready:
            score = likelihood.score_one(surprise)
            if self._range is not None and self._range.score_one(x) >= 1.0:
                score, breach = 1.0, True
        elif self.early_scores:
            score = self._golden.score_one(x)
        else:
            score = 0.0
        return surprise, score, breach
