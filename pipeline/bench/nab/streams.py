"""The detectors `bench nab` can run, by name (`DETECTORS`), each as a score stream: a fresh
one per file, every point scored (with its time) before it is learned.

Besides the product's own models from `detectors/`, it holds the detect stage itself run as a
stream (`StageStream`) and River's detectors as shipped (`RiverBaseline`), for reference rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, Protocol

from detectors import SeriesDetector
from detectors.compiled import CompiledLikelihood
from detectors.golden import GoldenSignalDetector, golden_for_signal
from detectors.likelihood import LikelihoodDetector
from pipeline.config import DetectConfig
from pipeline.detect import DetectStage, series_model
from pipeline.model import MetricPoint, SeriesKey, Signal

__all__ = ["DETECTORS", "RiverBaseline", "StageStream", "StreamDetector"]


class StreamDetector(Protocol):
    """What the bench needs of a detector: the detect stage's score-then-learn `step`."""

    def step(self, x: float, t: float | None = None) -> tuple[float, bool]: ...


def _shipped() -> StreamDetector:
    """The model a default `detect` section gives a `generic` series."""
    return series_model(DetectConfig(), Signal.GENERIC)


class StageStream:
    """What the detect stage emits, with the default configuration, for one series at the
    shipped thresholds, as a score stream: the stage itself (`DetectStage`) runs each point.

    The stage emits an anomaly when the score reaches its threshold, and keeps emitting while
    the model says the event `continues` (so the correlator can see it persist). Here an
    emitted continuation scores 1.0; every other point scores the model's own score. Only the
    "at 0.99" column of this row is the stage's exact output.

    Points keep their NAB timestamps, so the stage skips a repeated one as out of order; its
    `series_ttl` is a year, so the day-long gaps of some NAB files do not reset the model.
    """

    _SERIES = SeriesKey.of("nab_value", {"service": "nab"})  # no signal rule claims it: generic

    def __init__(self) -> None:
        self._stage = DetectStage(DetectConfig(series_ttl=366 * 86400.0), factory=self._model)
        self._model_seen: _Recording | None = None
        self._ts = 0.0

    def _model(self, signal: Signal) -> SeriesDetector:
        self._model_seen = _Recording(series_model(self._stage.config, signal))
        return self._model_seen

    def step(self, x: float, t: float | None = None) -> tuple[float, bool]:
        """Run `x` (at time `t`) through the stage: 1.0 when emitted as a continuation."""
        # Without a time, points are one second apart (the stage needs them in order).
        self._ts = t if t is not None else self._ts + 1.0
        if self._model_seen is not None:
            self._model_seen.last = 0.0
        continued = self._stage.stats.continued
        self._stage.observe(MetricPoint(self._SERIES, x, self._ts))
        if self._stage.stats.continued > continued:
            return 1.0, True
        return (self._model_seen.last if self._model_seen is not None else 0.0), False


class _Recording:
    """A series model that remembers the score of its last `step` (for `StageStream`), with
    every other call passed through."""

    def __init__(self, model: SeriesDetector) -> None:
        self._model = model
        self.last = 0.0

    @property
    def expected(self) -> float:
        return self._model.expected

    @property
    def n_seen(self) -> int:
        return self._model.n_seen

    def score_one(self, x: float) -> float:
        return self._model.score_one(x)

    def continues(self, x: float) -> bool:
        return self._model.continues(x)

    def learn_one(self, x: float) -> None:
        self._model.learn_one(x)

    def step(self, x: float, t: float | None = None) -> tuple[float, bool]:
        self.last, going_on = self._model.step(x, t)
        return self.last, going_on


class RiverBaseline:
    """One of River's anomaly detectors used as shipped, for reference rows: each value is
    scored, then learned, with the detector's default settings.

    - `sad`: `anomaly.StandardAbsoluteDeviation()` (mean and variance of everything seen); its
      score `|x - mean| / std` is unbounded, so it is squashed into [0, 1) by `s / (1 + s)`,
      which keeps the order of scores (NAB's threshold sweep sees only the order).
    - `gaussian`: `anomaly.GaussianScorer()` (grace period 100), whose score
      `2 * |cdf(x) - 0.5|` is already in [0, 1]. Beyond about 8 sigmas the CDF rounds to 1.0,
      so the largest deviations all tie at 1.0 and NAB's sweep cannot tell them apart.
    - `gaussian-z`: the same scorer with its score rescaled: `z / (1 + z)` of
      `z = |x - mu| / sigma` from its own Gaussian (0 within the grace period), the same
      order without the ties. (As shipped, the scorer also gives 1.0 to every point of a
      constant series, its CDF falling back to 0 when sigma is 0; here such a point scores 0.)
    - `hst`: `preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)` (10 trees of
      height 8 over windows of 250), as River's documentation pairs them, since the trees
      expect features in [0, 1].
    """

    def __init__(self, kind: Literal["sad", "gaussian", "gaussian-z", "hst"]) -> None:
        from river import anomaly, base, compose, preprocessing

        self.kind = kind
        self._supervised: base.SupervisedAnomalyDetector | None = None
        self._unsupervised: compose.Pipeline | None = None
        if kind == "sad":
            self._supervised = anomaly.StandardAbsoluteDeviation()
        elif kind in ("gaussian", "gaussian-z"):
            self._supervised = anomaly.GaussianScorer()  # type: ignore[no-untyped-call]
        else:
            self._unsupervised = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)

    def step(self, x: float, t: float | None = None) -> tuple[float, bool]:
        """Score `x`, then learn it; non-finite values score 0 and are not learned."""
        if not math.isfinite(x):
            return 0.0, False
        detector = self._supervised
        if detector is not None:
            score = float(detector.score_one({}, x))
            if self.kind == "gaussian-z" and score > 0.0:
                gaussian = detector.gaussian  # type: ignore[attr-defined]
                deviation, sigma = abs(x - float(gaussian.mu)), float(gaussian.sigma)
                # With no spread yet (a constant series) only a new value is a deviation.
                score = deviation / sigma if sigma > 0 else math.inf if deviation else 0.0
            if self.kind in ("sad", "gaussian-z"):
                score = 1.0 if math.isinf(score) else score / (1.0 + score)
            detector.learn_one({}, x)
            return score, False
        assert self._unsupervised is not None
        features = {"value": x}
        score = float(self._unsupervised.score_one(features))
        self._unsupervised.learn_one(features)
        return score, False


# The ideas added after the point model, left out by the rows before them.
_NO_VIEWS: dict[str, None] = {
    "drift_window": None,
    "seasonal_bins": None,
    "weekly_bins": None,
    "persistence_ratio": None,
}

# The rows before the quiet period: every part mutes only itself, scores on the likelihood's
# own scale (and no novelty view, which came later).
_NO_QUIET: dict[str, int | None] = {"quiet": 0, "alarm_level": None, "novelty_bins": None}

# The rows before the novelty view.
_NO_NOVELTY: dict[str, None] = {"novelty_bins": None}

# Names go into result file names (`<detector>_<file>.csv`), so they carry no underscores.
# `shipped` is the model of the default configuration. From golden-slow to likelihood, each
# name adds one idea to the one before it, so their rows show what each idea adds
# (detectors/README.md).
DETECTORS: dict[str, Callable[[], StreamDetector]] = {
    "shipped": _shipped,
    "golden": lambda: golden_for_signal("generic"),
    "golden-slow": lambda: GoldenSignalDetector(direction="both", alpha=0.01),
    "likelihood-only": lambda: CompiledLikelihood(
        range_tolerance=None, refractory=0, **_NO_VIEWS, **_NO_QUIET
    ),
    "likelihood-range": lambda: CompiledLikelihood(refractory=0, **_NO_VIEWS, **_NO_QUIET),
    "likelihood-refractory": lambda: CompiledLikelihood(**_NO_VIEWS, **_NO_QUIET),
    "likelihood-drift": lambda: CompiledLikelihood(
        seasonal_bins=None, weekly_bins=None, persistence_ratio=None, **_NO_QUIET
    ),
    "likelihood-daily": lambda: CompiledLikelihood(
        weekly_bins=None, persistence_ratio=None, **_NO_QUIET
    ),
    "likelihood-weekly": lambda: CompiledLikelihood(persistence_ratio=None, **_NO_QUIET),
    "likelihood-persistence": lambda: CompiledLikelihood(**_NO_QUIET),
    "likelihood-quiet": lambda: CompiledLikelihood(alarm_level=None, **_NO_NOVELTY),
    "likelihood-alarm": lambda: CompiledLikelihood(**_NO_NOVELTY),
    "likelihood": CompiledLikelihood,
    # The same model run by its Python specification: the same scores, far slower per point.
    "likelihood-reference": LikelihoodDetector,
    "likelihood-stage": StageStream,
    # River's own detectors as shipped, for reference (the issue quotes about 40, 39 and 25).
    "river-sad": lambda: RiverBaseline("sad"),
    "river-gaussian": lambda: RiverBaseline("gaussian"),
    "river-gaussian-z": lambda: RiverBaseline("gaussian-z"),
    "river-hst": lambda: RiverBaseline("hst"),
}
