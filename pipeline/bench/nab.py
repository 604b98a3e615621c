"""`quietpager bench nab`: the Numenta Anomaly Benchmark through the product's own detectors.

Each NAB file is one series. It is streamed point by point through a fresh detector from
`detectors/` (the classes the detect stage uses), each point scored before it is learned, and
the anomaly scores are scored with `pipeline.bench.nab_score` for NAB's three cost profiles.

NAB series say nothing about which golden signal they are (CPU, traffic, temperature, ad
prices...), and their labelled anomalies go both ways (drops and surges), so NAB is scored
with the `generic` signal, which alarms in both directions.

Halves: within each NAB category, files are ordered by the SHA-256 of their path relative
to `data/` (e.g. `realKnownCause/nyc_taxi.csv`) and dealt alternately to half `a` (tune:
designs are chosen on it) and half `b` (test: reported, never tuned on). The split is fixed
and balanced per category.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import pickle
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from rich.console import Console
from rich.table import Table

from detectors import SeriesDetector
from detectors.compiled import CompiledLikelihood, warm_up
from detectors.golden import GoldenSignalDetector, golden_for_signal
from detectors.likelihood import LikelihoodDetector
from pipeline.bench.nab_published import PublishedScores, read_published
from pipeline.bench.nab_score import (
    PROFILE_NAMES,
    CorpusScorer,
    CostProfile,
    Losses,
    Share,
    Window,
    credit_rows,
    file_share,
    file_span,
    load_profiles,
    probationary_length,
    resampled_scores,
    windows_from_timestamps,
)
from pipeline.config import DetectConfig
from pipeline.detect import DetectStage, series_model
from pipeline.errors import QuietpagerError
from pipeline.model import MetricPoint, SeriesKey, Signal

__all__ = [
    "COLUMN_HELP",
    "DETECTORS",
    "PROFILE_HEADINGS",
    "REFERENCE_SCORES",
    "SHIPPED_THRESHOLD",
    "DetectorRun",
    "MissedWindow",
    "NabFile",
    "NabReport",
    "PartCounts",
    "ProfileScore",
    "PublishedReport",
    "Resampled",
    "RiverBaseline",
    "StageStream",
    "StreamDetector",
    "count_parts",
    "count_parts_by_specification",
    "load_corpus",
    "missed_windows",
    "print_file_differences",
    "print_losses",
    "print_report",
    "print_resampled",
    "published_report",
    "read_results",
    "resample",
    "run_detector",
    "run_nab",
    "score_run",
    "split_half",
    "write_results",
]

Half = Literal["a", "b", "all"]

SHIPPED_THRESHOLD = 0.99  # the detect stage's default threshold on every signal

# How the report names each profile (`PROFILE_NAMES`).
PROFILE_HEADINGS = {
    "standard": "standard",
    "reward_low_FP_rate": "low FP",
    "reward_low_FN_rate": "low FN",
}

# Published NAB v1.1 scoreboard (standard, reward_low_FP_rate, reward_low_FN_rate).
REFERENCE_SCORES: tuple[tuple[str, float, float, float], ...] = (
    ("ARTime", 74.9, 65.1, 80.4),
    ("Numenta HTM", 70.5, 62.6, 75.2),
    ("CAD OSE", 69.9, 67.0, 73.2),
    ("KNN CAD", 58.0, 43.4, 64.8),
    ("Relative Entropy", 54.6, 47.6, 58.8),
    ("Random Cut Forest", 51.7, 38.4, 59.7),
    ("Twitter ADVec", 47.1, 33.6, 53.5),
    ("Windowed Gaussian", 39.6, 20.9, 47.4),
)


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


@dataclass(frozen=True, slots=True)
class NabFile:
    """One NAB data file with its labels and its half."""

    relative_path: str
    timestamps: tuple[str, ...]
    seconds: tuple[float, ...]  # the timestamps as epoch seconds (UTC when they name no zone)
    values: tuple[float, ...]
    windows: tuple[Window, ...]
    half: Literal["a", "b"]

    @property
    def category(self) -> str:
        """The NAB category folder, e.g. `realKnownCause`."""
        return self.relative_path.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The file name, e.g. `nyc_taxi.csv`."""
        return self.relative_path.rsplit("/", 1)[-1]


def split_half(relative_paths: Iterable[str]) -> dict[str, Literal["a", "b"]]:
    """Each path's half: per category, ordered by SHA-256 of the path, dealt a, b, a, b...

    >>> split_half(["x/one.csv", "x/two.csv", "y/three.csv"])
    {'x/two.csv': 'a', 'x/one.csv': 'b', 'y/three.csv': 'a'}
    """
    by_category: dict[str, list[str]] = {}
    for path in relative_paths:
        by_category.setdefault(path.split("/", 1)[0], []).append(path)
    halves: dict[str, Literal["a", "b"]] = {}
    for category in sorted(by_category):
        ordered = sorted(
            by_category[category], key=lambda p: hashlib.sha256(p.encode()).hexdigest()
        )
        for i, path in enumerate(ordered):
            halves[path] = "a" if i % 2 == 0 else "b"
    return halves


def load_corpus(root: Path, half: Half = "all") -> list[NabFile]:
    """The NAB files under `root` (`data/`, `labels/combined_windows.json`) in one half or all."""
    data = root / "data"
    labels_path = root / "labels" / "combined_windows.json"
    if not data.is_dir() or not labels_path.is_file():
        raise QuietpagerError(
            f"{root}: not a NAB directory (needs data/ and labels/combined_windows.json)"
        )
    with labels_path.open(encoding="utf-8") as handle:
        labels: dict[str, list[list[str]]] = json.load(handle)
    paths = sorted(p.relative_to(data).as_posix() for p in data.glob("*/*.csv"))
    if not paths:
        raise QuietpagerError(f"{data}: no NAB data files")
    halves = split_half(paths)
    files = []
    for relative in paths:
        if half != "all" and halves[relative] != half:
            continue
        if relative not in labels:
            raise QuietpagerError(f"{labels_path}: no labels for {relative}")
        stamps, values = _read_series(data / relative)
        parsed = [datetime.fromisoformat(s) for s in stamps]
        limits = [
            (datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in labels[relative]
        ]
        files.append(
            NabFile(
                relative_path=relative,
                timestamps=tuple(stamps),
                seconds=tuple(
                    (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp() for d in parsed
                ),
                values=tuple(values),
                windows=tuple(windows_from_timestamps(parsed, limits)),
                half=halves[relative],
            )
        )
    return files


def _read_series(path: Path) -> tuple[list[str], list[float]]:
    stamps: list[str] = []
    values: list[float] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise QuietpagerError(f"{path}: expected a 'timestamp,value' header")
        for row in reader:
            stamps.append(row[0])
            values.append(float(row[1]))
    return stamps, values


@dataclass(frozen=True, slots=True)
class DetectorRun:
    """One detector's anomaly scores over a corpus, and what it cost."""

    detector: str
    scores: Mapping[str, Sequence[float]]  # by relative path
    points: int
    # None where the scores were read from result files rather than run here.
    microseconds_per_point: float | None
    bytes_per_series: int | None  # the largest pickle of a series' model at the end of its file


def _unknown_detector(name: str) -> QuietpagerError:
    return QuietpagerError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")


def run_detector(name: str, files: Sequence[NabFile]) -> DetectorRun:
    """Stream every file through a fresh detector `name`: score each point (with its time),
    then learn it."""
    factory = DETECTORS.get(name)
    if factory is None:
        raise _unknown_detector(name)
    scores: dict[str, list[float]] = {}
    elapsed = 0.0
    points = 0
    largest = 0
    warm_up()  # the compiled models' kernel loads (or compiles) here, not inside the timing
    for nab_file in files:
        detector = factory()
        step = detector.step
        started = time.perf_counter()
        out = [step(x, t)[0] for x, t in zip(nab_file.values, nab_file.seconds, strict=True)]
        elapsed += time.perf_counter() - started
        points += len(nab_file.values)
        largest = max(largest, len(pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)))
        scores[nab_file.relative_path] = out
    per_point = elapsed / points * 1e6 if points else 0.0
    return DetectorRun(name, scores, points, per_point, largest)


def write_results(run: DetectorRun, files: Sequence[NabFile], out: Path) -> None:
    """NAB-format result files: `out/<detector>/<category>/<detector>_<file>.csv`."""
    for nab_file in files:
        folder = out / run.detector / nab_file.category
        folder.mkdir(parents=True, exist_ok=True)
        inside = [0] * len(nab_file.values)
        for window in nab_file.windows:
            inside[window.first : window.last + 1] = [1] * window.width
        scores = run.scores[nab_file.relative_path]
        with (folder / f"{run.detector}_{nab_file.name}").open(
            "w", encoding="utf-8", newline=""
        ) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["timestamp", "value", "anomaly_score", "label"])
            for row in zip(nab_file.timestamps, nab_file.values, scores, inside, strict=True):
                writer.writerow(row)


def read_results(
    results_dir: Path, files: Sequence[NabFile], detectors: Sequence[str] | None = None
) -> list[DetectorRun]:
    """Runs read back from NAB-format result files instead of run here: ours (`--results-dir`)
    or any detector's, such as those a NAB checkout publishes under `results/`.

    Each detector is a folder of `results_dir` holding
    `<detector>/<category>/<detector>_<file>.csv` for every file in `files`, with a
    `timestamp` and an `anomaly_score` column (others are ignored) and the data file's rows
    in its order. `detectors` names the folders to read; by default, every folder that holds
    result files. Anything missing or malformed raises a `QuietpagerError` naming the file
    (and the line).
    """
    if not results_dir.is_dir():
        raise QuietpagerError(f"{results_dir}: no such results directory")
    names = list(detectors) if detectors else _result_folders(results_dir)
    if not names:
        raise QuietpagerError(
            f"{results_dir}: no result files (expected <detector>/<category>/<detector>_<file>.csv)"
        )
    runs = []
    for name in names:
        if not (results_dir / name).is_dir():
            raise QuietpagerError(f"{results_dir / name}: no results for detector {name!r}")
        scores = {
            nab_file.relative_path: _read_result(
                results_dir / name / nab_file.category / f"{name}_{nab_file.name}", nab_file
            )
            for nab_file in files
        }
        points = sum(len(nab_file.values) for nab_file in files)
        runs.append(DetectorRun(name, scores, points, None, None))
    return runs


def _result_folders(results_dir: Path) -> list[str]:
    return sorted(
        folder.name
        for folder in results_dir.iterdir()
        if folder.is_dir() and any(folder.glob(f"*/{folder.name}_*.csv"))
    )


def _read_result(path: Path, nab_file: NabFile) -> list[float]:
    if not path.is_file():
        raise QuietpagerError(f"{path}: missing (every file of the corpus needs its result)")
    scores: list[float] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for needed in ("timestamp", "anomaly_score"):
            if needed not in columns:
                raise QuietpagerError(f"{path}: no {needed!r} column (has {', '.join(columns)})")
        expected = nab_file.timestamps
        for row in reader:
            line = reader.line_num
            i = len(scores)
            stamp = (row["timestamp"] or "").strip()
            if i >= len(expected) or stamp != expected[i].strip():
                want = repr(expected[i]) if i < len(expected) else "no more rows"
                raise QuietpagerError(
                    f"{path}:{line}: timestamp {stamp!r} where the data file has {want}"
                )
            raw = row["anomaly_score"]
            try:
                score = float(raw or "")
            except ValueError:
                raise QuietpagerError(
                    f"{path}:{line}: anomaly_score {raw!r} is not a number"
                ) from None
            if not 0.0 <= score <= 1.0:
                raise QuietpagerError(f"{path}:{line}: anomaly_score {raw!r} is not in [0, 1]")
            scores.append(score)
    if len(scores) != len(nab_file.values):
        raise QuietpagerError(
            f"{path}: {len(scores)} rows where the data file has {len(nab_file.values)}"
        )
    return scores


@dataclass(frozen=True, slots=True)
class ProfileScore:
    """A normalised NAB score under one profile, with the threshold that gave it."""

    score: float
    threshold: float


@dataclass(frozen=True, slots=True)
class NabReport:
    """One detector's scores: per column (which files, which threshold), per profile."""

    run: DetectorRun
    columns: Mapping[str, Mapping[str, ProfileScore]]
    losses: Mapping[str, Losses]  # per profile, over the files run at the "corpus" threshold


# Report columns, in order: what each one scores.
COLUMN_HELP = {
    "corpus": "files run, threshold optimised per profile over them (NAB's protocol)",
    "tune a": "half a, threshold optimised on half a",
    "test b": "half b, at half a's thresholds (held out)",
    "at 0.99": f"files run, at the shipped threshold {SHIPPED_THRESHOLD}",
}


def _scorer(run: DetectorRun, files: Iterable[NabFile]) -> CorpusScorer:
    scorer = CorpusScorer()
    for nab_file in files:
        scorer.add_file(run.scores[nab_file.relative_path], nab_file.windows)
    return scorer


def score_run(
    run: DetectorRun, files: Sequence[NabFile], profiles: Sequence[CostProfile]
) -> NabReport:
    """Score a run over the files it ran, and per half where both halves are present."""
    columns: dict[str, dict[str, ProfileScore]] = {}
    losses: dict[str, Losses] = {}
    corpus = _scorer(run, files)
    tune_files = [f for f in files if f.half == "a"]
    test_files = [f for f in files if f.half == "b"]
    tune = _scorer(run, tune_files) if tune_files and test_files else None
    test = _scorer(run, test_files) if tune_files and test_files else None
    for profile in profiles:
        best = corpus.best(profile)
        columns.setdefault("corpus", {})[profile.name] = ProfileScore(
            corpus.normalized(profile, best.raw), best.threshold
        )
        losses[profile.name] = corpus.losses(profile, best.threshold)
        if tune is not None and test is not None:
            tuned = tune.best(profile)
            columns.setdefault("tune a", {})[profile.name] = ProfileScore(
                tune.normalized(profile, tuned.raw), tuned.threshold
            )
            held_out = test.at_threshold(profile, tuned.threshold)
            columns.setdefault("test b", {})[profile.name] = ProfileScore(
                test.normalized(profile, held_out.raw), tuned.threshold
            )
        shipped = corpus.at_threshold(profile, SHIPPED_THRESHOLD)
        columns.setdefault("at 0.99", {})[profile.name] = ProfileScore(
            corpus.normalized(profile, shipped.raw), SHIPPED_THRESHOLD
        )
    return NabReport(run, columns, losses)


@dataclass(frozen=True, slots=True)
class PublishedReport:
    """A published detector's scores on the files run, from its per-file raw scores
    (`--published`): per column ("corpus", and "half a" / "half b" where both halves were
    run), per profile, all at the threshold NAB chose for it over the whole corpus."""

    published: PublishedScores
    shares: Mapping[str, Sequence[Share]]  # per profile, in the order of the files run
    columns: Mapping[str, Mapping[str, ProfileScore]]


def _normalised(shares: Sequence[Share]) -> float:
    """The normalised score of a set of files from their shares (all of them, once each)."""
    (score,) = resampled_scores(shares, [range(len(shares))])
    if score is None:
        raise QuietpagerError("a set of files without anomaly windows cannot be normalised")
    return score


def published_report(
    published: PublishedScores, files: Sequence[NabFile], profiles: Sequence[CostProfile]
) -> PublishedReport:
    """Score a published detector on the files run from its per-file raw scores."""
    shares: dict[str, list[Share]] = {}
    columns: dict[str, dict[str, ProfileScore]] = {}
    halves = {f.half for f in files}
    for profile in profiles:
        raw = published.raw[profile.name]
        shares[profile.name] = []
        for f in files:
            span = file_span(len(f.values), f.windows, profile)
            shares[profile.name].append(Share(raw[f.relative_path], span.null, span.perfect))
        threshold = published.thresholds[profile.name]
        picked = {"corpus": shares[profile.name]}
        if halves == {"a", "b"}:
            for half in ("a", "b"):
                picked[f"half {half}"] = [
                    s for s, f in zip(shares[profile.name], files, strict=True) if f.half == half
                ]
        for column, chosen in picked.items():
            columns.setdefault(column, {})[profile.name] = ProfileScore(
                _normalised(chosen), threshold
            )
    return PublishedReport(published, shares, columns)


def _threshold_text(threshold: float) -> str:
    if math.isinf(threshold):
        return "never"
    # Thresholds crowd towards 1; the distance from 1 is what tells them apart.
    return f"1-{1 - threshold:.1e}" if threshold > 0.999 else f"{threshold:.4f}"


def print_report(
    reports: Sequence[NabReport],
    files: Sequence[NabFile],
    half: Half,
    console: Console,
    published: Sequence[PublishedReport] = (),
) -> None:
    """The score table, the published reference rows beside it, and each detector's cost;
    published detectors rescored from their per-file scores (`published`) after the runs."""
    points = sum(len(f.values) for f in files)
    windows = sum(len(f.windows) for f in files)
    table = Table(
        title=f"bench nab — {len(files)} files (half {half}), {points:,} points, {windows} windows"
    )
    for heading in ("detector", "scored on"):
        table.add_column(heading)
    headings = [PROFILE_HEADINGS[p] for p in PROFILE_NAMES]
    for heading in (*headings, "thresholds", "µs/point", "bytes/series"):
        table.add_column(heading, justify="right")
    for report in reports:
        for i, (column, by_profile) in enumerate(report.columns.items()):
            run = report.run
            micros, size = run.microseconds_per_point, run.bytes_per_series
            cost = ["", ""]
            if i == 0:  # "—": read from result files, not run here
                cost = [
                    "—" if micros is None else f"{micros:.2f}",
                    "—" if size is None else f"{size:,}",
                ]
            table.add_row(
                report.run.detector if i == 0 else "",
                column,
                *(f"{by_profile[p].score:.1f}" for p in PROFILE_NAMES),
                " / ".join(_threshold_text(by_profile[p].threshold) for p in PROFILE_NAMES),
                *cost,
            )
        table.add_section()
    for pub in published:
        for i, (column, by_profile) in enumerate(pub.columns.items()):
            table.add_row(
                pub.published.detector if i == 0 else "",
                f"{column}, per file",
                *(f"{by_profile[p].score:.1f}" for p in PROFILE_NAMES),
                " / ".join(_threshold_text(by_profile[p].threshold) for p in PROFILE_NAMES),
                "—" if i == 0 else "",
                "—" if i == 0 else "",
            )
        table.add_section()
    for name, standard, low_fp, low_fn in REFERENCE_SCORES:
        table.add_row(
            f"[dim]{name}[/dim]",
            "[dim]published[/dim]",
            f"{standard:.1f}",
            f"{low_fp:.1f}",
            f"{low_fn:.1f}",
            "",
            "",
            "",
        )
    console.print(table)
    for column, meaning in COLUMN_HELP.items():
        console.print(f"[dim]{column}: {meaning}[/dim]")
    if published:
        console.print(
            "[dim]per file: a published detector's own per-file scores (--published), at the "
            "threshold NAB chose for it on the whole corpus; half a / half b: those files "
            "only, at that threshold[/dim]"
        )
    console.print("[dim]published: the NAB scoreboard, whole corpus, NAB's protocol[/dim]")


@dataclass(frozen=True, slots=True)
class MissedWindow:
    """A labelled window with no detection at a threshold, and the best score it got."""

    relative_path: str
    half: Literal["a", "b"]
    window: Window
    peak: float  # the highest anomaly score on the window's scored rows


def missed_windows(
    run: DetectorRun, files: Sequence[NabFile], threshold: float
) -> list[MissedWindow]:
    """The scorable windows in which no row reaches `threshold`, closest misses first."""
    missed = []
    for nab_file in files:
        scores = run.scores[nab_file.relative_path]
        probation = probationary_length(len(scores))
        for window in nab_file.windows:
            scored = scores[max(window.first, probation) : window.last + 1]
            if scored and max(scored) < threshold:
                missed.append(
                    MissedWindow(nab_file.relative_path, nab_file.half, window, max(scored))
                )
    return sorted(missed, key=lambda m: (-m.peak, m.relative_path, m.window.first))


@dataclass(frozen=True, slots=True)
class PartCounts:
    """Which part of a likelihood model raised the detections at a threshold
    (`LikelihoodDetector.last_part`)."""

    threshold: float
    hits: Counter[str]  # the first detection in each window caught, by part
    outside: Counter[str]  # every detection outside the windows, by part


def count_parts(
    scores: Sequence[float], parts: Sequence[str], windows: Sequence[Window], threshold: float
) -> tuple[Counter[str], Counter[str]]:
    """One file's detections at `threshold` by the part that gave each: the first detection
    in each window (the one NAB credits) and every detection outside the windows (each one
    NAB charges); probationary rows count for neither, as in NAB."""
    hits: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    caught: set[int] = set()
    for score, part, credit in zip(scores, parts, credit_rows(len(scores), windows), strict=True):
        if credit.probationary or score < threshold:
            continue
        if credit.window is None:
            outside[part] += 1
        elif credit.window not in caught:
            caught.add(credit.window)
            hits[part] += 1
    return hits, outside


def _specification(name: str) -> Callable[[], LikelihoodDetector] | None:
    """Fresh Python specifications of detector `name`, where it is a likelihood model."""
    factory = DETECTORS.get(name)
    if factory is None:
        return None
    probe = factory()
    if isinstance(probe, CompiledLikelihood):
        return probe.reference
    if isinstance(probe, LikelihoodDetector):
        return probe.clone
    return None


def count_parts_by_specification(
    run: DetectorRun, files: Sequence[NabFile], threshold: float
) -> PartCounts | None:
    """`count_parts` over the files, read off the Python specification of the model `run`
    ran (None for a detector that is no likelihood model, or a run read from result files).

    The specification says which part gave each score; its scores must equal the run's
    (the compiled model is held to it), and a file where they do not is an error rather
    than a count of some other model's detections.
    """
    make = _specification(run.detector) if run.microseconds_per_point is not None else None
    if make is None:
        return None
    hits: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for nab_file in files:
        detector = make()
        scores: list[float] = []
        parts: list[str] = []
        for x, t in zip(nab_file.values, nab_file.seconds, strict=True):
            scores.append(detector.step(x, t)[0])
            parts.append(detector.last_part)
        if scores != list(run.scores[nab_file.relative_path]):
            raise QuietpagerError(
                f"{run.detector}: its Python specification scores {nab_file.relative_path} "
                "differently from the run; parts not counted"
            )
        file_hits, file_outside = count_parts(scores, parts, nab_file.windows, threshold)
        hits.update(file_hits)
        outside.update(file_outside)
    return PartCounts(threshold, hits, outside)


def _by_part(counts: Counter[str]) -> str:
    return ", ".join(f"{part} {n}" for part, n in counts.most_common()) or "none"


def print_losses(
    reports: Sequence[NabReport],
    files: Sequence[NabFile],
    console: Console,
    part_counts: Mapping[str, PartCounts] | None = None,
) -> None:
    """Where each detector's points go in each profile, and the windows it misses in standard
    (with `part_counts`, by detector name: which part raised the detections there)."""
    for report in reports:
        console.print(
            f"[bold]{report.run.detector}[/bold]: where the points go "
            "(files run, each profile at its own threshold)"
        )
        for name in PROFILE_NAMES:
            lost = report.losses[name]
            parts = [
                f"{lost.missed_windows} missed windows {lost.missed_points:.1f}",
                f"lateness of the {lost.detected_windows} hits {lost.timing_points:.1f}",
                f"{lost.false_positives} detections outside windows "
                f"{lost.false_positive_points:.1f}",
            ]
            if lost.unscorable_points:
                parts.append(f"windows inside probation {lost.unscorable_points:.1f}")
            console.print(
                f"  {name:<19} {lost.score:5.1f} at {_threshold_text(lost.threshold)}, "
                f"{100 - lost.score:.1f} lost: " + ", ".join(parts)
            )
        standard = report.losses["standard"]
        missed = missed_windows(report.run, files, standard.threshold)
        if missed:
            console.print("  missed at the standard threshold (half, rows, peak score):")
        for miss in missed:
            console.print(
                f"    {miss.half} {miss.relative_path} rows {miss.window.first}-"
                f"{miss.window.last}: {miss.peak:.4f}"
            )
        counted = (part_counts or {}).get(report.run.detector)
        if counted is not None:
            console.print(
                "  by the part that raised them, at the standard threshold: first detections "
                f"in windows {_by_part(counted.hits)}; outside windows {_by_part(counted.outside)}"
            )


@dataclass(frozen=True, slots=True)
class Interval:
    """A figure on the files run, and where the middle 90% of its resampled values lie."""

    observed: float
    low: float  # the 5th percentile over the draws
    high: float  # the 95th
    ahead: float  # the share of draws above 0 (read for differences)


@dataclass(frozen=True, slots=True)
class Resampled:
    """How much the scores owe to which files: each detector's corpus score recomputed on
    `draws` resamples of the files (as many files, drawn with replacement, the same draws for
    every detector), each profile at the threshold the corpus column chose (for a published
    detector, the one NAB chose).

    `names[k]` is detector k: the detectors run (or read) first, then the published ones.
    `scores[k][profile]` is detector k's score; `differences[k - 1][profile]`, for k >= 1, is
    detector k's score minus detector 0's, draw by draw (a paired comparison: both on the same
    files).
    """

    draws: int
    seed: int
    files: int
    names: Sequence[str]
    scores: Sequence[Mapping[str, Interval]]
    differences: Sequence[Mapping[str, Interval]]


def _interval(observed: float, values: Sequence[float]) -> Interval:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    ahead = sum(1 for v in values if v > 0) / len(values)
    return Interval(observed, cuts[0], cuts[-1], ahead)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One detector as resampling sees it: its corpus score and its files' shares, per profile."""

    name: str
    observed: Mapping[str, float]
    shares: Mapping[str, Sequence[Share]]


def _report_entry(
    report: NabReport, files: Sequence[NabFile], profiles: Sequence[CostProfile]
) -> _Entry:
    corpus = report.columns["corpus"]
    shares = {
        profile.name: [
            file_share(
                report.run.scores[f.relative_path],
                f.windows,
                profile,
                corpus[profile.name].threshold,
            )
            for f in files
        ]
        for profile in profiles
    }
    return _Entry(report.run.detector, {p.name: corpus[p.name].score for p in profiles}, shares)


def resample(
    reports: Sequence[NabReport],
    files: Sequence[NabFile],
    profiles: Sequence[CostProfile],
    draws: int,
    seed: int = 0,
    published: Sequence[PublishedReport] = (),
) -> Resampled:
    """Resample the files `draws` times and rescore each report, then each published detector,
    on every draw (see `Resampled`); a draw without a scorable window is drawn again."""
    if draws < 2:
        raise QuietpagerError(f"resampling needs at least 2 draws, got {draws}")
    entries = [_report_entry(report, files, profiles) for report in reports]
    entries += [
        _Entry(
            pub.published.detector,
            {p.name: pub.columns["corpus"][p.name].score for p in profiles},
            pub.shares,
        )
        for pub in published
    ]
    if not entries:
        raise QuietpagerError("nothing to resample: no detector was scored")
    reference = entries[0].shares[profiles[0].name]
    if not any(share.perfect > share.null for share in reference):
        raise QuietpagerError("cannot resample: no file has a scorable window")
    rng = random.Random(seed)
    picks: list[list[int]] = []
    while len(picks) < draws:
        pick = [rng.randrange(len(files)) for _ in files]
        if resampled_scores(reference, [pick])[0] is not None:
            picks.append(pick)
    values = [
        {
            name: [v for v in resampled_scores(by_file, picks) if v is not None]
            for name, by_file in entry.shares.items()
        }
        for entry in entries
    ]
    scores = [
        {p.name: _interval(entry.observed[p.name], values[k][p.name]) for p in profiles}
        for k, entry in enumerate(entries)
    ]
    first = entries[0]
    differences = [
        {
            p.name: _interval(
                entry.observed[p.name] - first.observed[p.name],
                [a - b for a, b in zip(values[k][p.name], values[0][p.name], strict=True)],
            )
            for p in profiles
        }
        for k, entry in enumerate(entries)
        if k > 0
    ]
    names = [entry.name for entry in entries]
    return Resampled(draws, seed, len(files), names, scores, differences)


def print_resampled(resampled: Resampled, console: Console) -> None:
    """Each detector's scores with their 90% resampling intervals, then each later detector's
    paired difference from the first."""
    console.print(
        f"resampled: {resampled.draws:,} draws of {resampled.files} files with replacement "
        f"(seed {resampled.seed}), each profile at the corpus row's threshold; "
        "90% of draws lie in the brackets"
    )
    width = max(len(name) for name in resampled.names)
    for name, by_profile in zip(resampled.names, resampled.scores, strict=True):
        cells = [
            f"{PROFILE_HEADINGS.get(profile, profile)} {i.observed:.1f} [{i.low:.1f}, {i.high:.1f}]"
            for profile, i in by_profile.items()
        ]
        console.print(f"  {name:<{width}}  " + "   ".join(cells))
    first = resampled.names[0]
    later = resampled.names[1:]
    width = max((len(f"{name} - {first}:") for name in later), default=0)
    for name, by_profile in zip(later, resampled.differences, strict=True):
        label = f"{name} - {first}:"
        cells = [
            f"{PROFILE_HEADINGS.get(profile, profile)} {i.observed:+.1f} "
            f"[{i.low:+.1f}, {i.high:+.1f}] ahead in {i.ahead:.0%}"
            for profile, i in by_profile.items()
        ]
        console.print(f"  {label:<{width}}  " + "   ".join(cells))


def print_file_differences(
    report: NabReport,
    published: Sequence[PublishedReport],
    files: Sequence[NabFile],
    profiles: Sequence[CostProfile],
    console: Console,
    shown: int = 5,
) -> None:
    """Per profile, the files where each published detector's raw score is furthest above and
    below `report`'s (each at its own corpus threshold): where the two differ, file by file."""
    ours = _report_entry(report, files, profiles)
    for pub in published:
        console.print(
            f"{pub.published.detector} - {ours.name}, raw score by file (each at its corpus "
            "threshold; a window caught or missed is worth tp + fn weight):"
        )
        for profile in profiles:
            theirs = pub.shares[profile.name]
            gaps = sorted(
                (
                    (t.raw - o.raw, f)
                    for t, o, f in zip(theirs, ours.shares[profile.name], files, strict=True)
                ),
                key=lambda gap: gap[0],
            )
            ahead = [g for g in reversed(gaps) if g[0] > 0][:shown]
            behind = [g for g in gaps if g[0] < 0][:shown]
            heading = PROFILE_HEADINGS.get(profile.name, profile.name)
            total = sum(gap for gap, _ in gaps)
            console.print(f"  {heading}: {total:+.2f} in all")
            for label, chosen in (("ahead", ahead), ("behind", behind)):
                text = ", ".join(f"{f.half} {f.relative_path} {gap:+.2f}" for gap, f in chosen)
                console.print(f"    {label}: {text or 'nowhere'}")


def run_nab(
    data: Path,
    detectors: Sequence[str],
    results_dir: Path | None = None,
    half: Half = "all",
    console: Console | None = None,
    score_results: Path | None = None,
    breakdown: bool = False,
    resample_draws: int = 0,
    seed: int = 0,
    published: Sequence[Path] = (),
) -> list[NabReport]:
    """Run each detector over the corpus, write result files if asked, print the table.

    With `score_results`, nothing runs: the result files in that directory are scored
    instead (`read_results`; `detectors`, when not empty, names which). With
    `resample_draws`, the scores' spread over resampled files is printed too (`resample`).
    Each folder in `published` holds a published detector's per-file scores
    (`read_published`): it is rescored on the files run, compared file by file with the
    first detector under `breakdown`, and resampled with the others.
    """
    if score_results is not None and results_dir is not None:
        raise QuietpagerError(
            "--results-dir writes result files and --score-results reads them: give one"
        )
    if resample_draws < 0 or resample_draws == 1:
        raise QuietpagerError(
            f"--resample needs at least 2 draws (0: no resampling), got {resample_draws}"
        )
    console = console or Console()
    files = load_corpus(data, half)
    profiles_path = data / "profiles.json"
    if not profiles_path.is_file():
        raise QuietpagerError(f"{data}: missing profiles.json")
    by_name = {profile.name: profile for profile in load_profiles(profiles_path)}
    missing = [p for p in PROFILE_NAMES if p not in by_name]
    if missing:
        raise QuietpagerError(f"{profiles_path}: missing profiles {', '.join(missing)}")
    profiles = [by_name[name] for name in PROFILE_NAMES]
    # read before anything runs, so that a bad folder costs no run's time
    others = [
        read_published(folder, [f.relative_path for f in files], PROFILE_NAMES)
        for folder in published
    ]
    if score_results is not None:
        runs = read_results(score_results, files, detectors)
    else:
        for name in detectors:  # before any run: a typo in the last name costs no run's time
            if name not in DETECTORS:
                raise _unknown_detector(name)
        runs = []
        for name in detectors:
            runs.append(run_detector(name, files))
            if results_dir is not None:
                write_results(runs[-1], files, results_dir)
    reports = [score_run(run, files, profiles) for run in runs]
    pubs = [published_report(other, files, profiles) for other in others]
    print_report(reports, files, half, console, pubs)
    if breakdown:
        parts: dict[str, PartCounts] = {}
        for report in reports:
            threshold = report.losses["standard"].threshold
            counted = count_parts_by_specification(report.run, files, threshold)
            if counted is not None:
                parts[report.run.detector] = counted
        print_losses(reports, files, console, parts)
        if reports and pubs:
            print_file_differences(reports[0], pubs, files, profiles, console)
    if resample_draws:
        print_resampled(
            resample(reports, files, profiles, resample_draws, seed, published=pubs), console
        )
    return reports
