"""NAB scoring, implemented from its published description (Lavin & Ahmad, ICMLA 2015; Ahmad
et al., Neurocomputing 2017; the NAB wiki's scoring notes). Pure: no files, no clock.

The rules, per file of `n` rows with labelled anomaly windows (row index ranges):

- The first `min(floor(0.15 n), 750)` rows are probationary: never scored, whatever the detector
  says there, and a window lying wholly inside them counts neither as a hit nor as a miss.
- A row inside a window of `w` rows ending at row `e` is a would-be true positive worth
  `sigma(-(e - i + 1) / w) / sigma(-1) * tp_weight`, so a hit on the window's first row is worth
  exactly `tp_weight` and a hit at its end almost nothing. Only the best (earliest) detection
  in a window counts; a window with none costs `-fn_weight`.
- A detection outside every window is a false positive worth `sigma(d / (w_prev - 1)) *
  fp_weight`, `d` rows after the end of the previous window of width `w_prev`: just after a
  window it costs little, three window lengths on a full `-fp_weight`. With no window before
  it, it costs a full `-fp_weight`.
- `sigma(y) = 2 / (1 + e^(5y)) - 1` (and `-1` for `y > 3`).
- A file's raw score is the sum; a corpus's raw score is the sum over its files at one
  threshold (a row is a detection when its anomaly score is `>=` the threshold). The
  threshold is chosen per cost profile to maximise the corpus's raw score, by sweeping every
  distinct anomaly score.
- Normalised score: `100 * (raw - null) / (perfect - null)`, where `null` is the detector that
  never detects (`-fn_weight` per scorable window) and `perfect` hits every window on its
  first row (`tp_weight` per window).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "PROFILE_NAMES",
    "CorpusScorer",
    "CostProfile",
    "Losses",
    "RowCredit",
    "Share",
    "ThresholdScore",
    "Window",
    "credit_rows",
    "file_share",
    "file_span",
    "load_profiles",
    "parse_profiles",
    "probationary_length",
    "resampled_scores",
    "scaled_sigmoid",
    "windows_from_timestamps",
]

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750  # 0.15 of 5000 rows: long files get the same fixed learning period

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def scaled_sigmoid(y: float) -> float:
    """NAB's credit for a relative position `y`: about +0.987 at -1, 0 at 0, -1 beyond 3.

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.98661, 0.0, -1.0)
    """
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


_MAX_TP = scaled_sigmoid(-1.0)


def probationary_length(n_rows: int) -> int:
    """How many leading rows of an `n_rows` file NAB leaves unscored.

    >>> probationary_length(4032), probationary_length(22695)
    (604, 750)
    """
    return min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_CAP)


@dataclass(frozen=True, slots=True)
class CostProfile:
    """One NAB application profile: how much a hit, a false alarm and a miss weigh."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


def parse_profiles(raw: Mapping[str, Any]) -> tuple[CostProfile, ...]:
    """Profiles from NAB's `profiles.json` shape: `{name: {"CostMatrix": {"tpWeight": ...}}}`.

    >>> parse_profiles({"standard": {"CostMatrix": {"tpWeight": 1, "fpWeight": 0.11,
    ...     "fnWeight": 1, "tnWeight": 1}}})
    (CostProfile(name='standard', tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),)
    """
    profiles = []
    for name, body in raw.items():
        matrix = body["CostMatrix"]
        profiles.append(
            CostProfile(
                name=name,
                tp_weight=float(matrix["tpWeight"]),
                fp_weight=float(matrix["fpWeight"]),
                fn_weight=float(matrix["fnWeight"]),
            )
        )
    return tuple(profiles)


def load_profiles(path: Path) -> tuple[CostProfile, ...]:
    """The profiles of a NAB `profiles.json` file."""
    with path.open(encoding="utf-8") as handle:
        return parse_profiles(json.load(handle))


@dataclass(frozen=True, slots=True)
class Window:
    """A labelled anomaly window: the row indices of its first and last rows (inclusive)."""

    first: int
    last: int

    @property
    def width(self) -> int:
        """How many rows the window spans."""
        return self.last - self.first + 1


def windows_from_timestamps(
    timestamps: Sequence[datetime], limits: Iterable[tuple[datetime, datetime]]
) -> list[Window]:
    """Row windows from timestamp limits: the rows with `start <= ts <= end` (rows sorted).

    NAB's labels name existing rows, so this is the exact match; a window that holds no row
    is dropped.
    """
    windows = []
    for start, end in limits:
        first = bisect.bisect_left(timestamps, start)
        last = bisect.bisect_right(timestamps, end) - 1
        if first <= last:
            windows.append(Window(first, last))
    return windows


@dataclass(frozen=True, slots=True)
class RowCredit:
    """What a detection on one row would be worth before profile weights.

    `sigma` is the scaled-sigmoid credit; `window` is the index of the row's window in its
    file, or None outside every window; probationary rows are never scored.
    """

    sigma: float
    window: int | None
    probationary: bool


def credit_rows(n_rows: int, windows: Sequence[Window]) -> list[RowCredit]:
    """The credit of a detection on each row of a file with these (sorted, disjoint) windows."""
    probation = probationary_length(n_rows)
    credits: list[RowCredit] = []
    ordered = sorted(windows, key=lambda w: w.first)
    next_window = 0
    current: int | None = None
    previous: Window | None = None
    for i in range(n_rows):
        if current is None and next_window < len(ordered) and ordered[next_window].first == i:
            current = next_window
            next_window += 1
        if current is not None:
            window = ordered[current]
            sigma = scaled_sigmoid(-(window.last - i + 1) / window.width)
        elif previous is None:
            sigma = -1.0
        else:
            # A one-row window would divide by zero; NAB's corpus has none, one row is the floor.
            sigma = scaled_sigmoid((i - previous.last) / max(previous.width - 1, 1))
        credits.append(RowCredit(sigma, current, i < probation))
        if current is not None and ordered[current].last == i:
            previous = ordered[current]
            current = None
    return credits


@dataclass(frozen=True, slots=True)
class ThresholdScore:
    """A corpus's raw NAB score at one threshold, with what made it up."""

    threshold: float
    raw: float
    detected_windows: int
    missed_windows: int
    false_positives: int


@dataclass(frozen=True, slots=True)
class Losses:
    """Where a corpus's normalised score falls short of 100 at one threshold, in points of
    that score: the four parts add up to `100 - score`.

    - `missed_points`: the windows with no detection (`tp_weight + fn_weight` each);
    - `timing_points`: the windows detected after their first row (the credit short of
      `tp_weight`);
    - `false_positive_points`: the detections outside every window;
    - `unscorable_points`: windows wholly inside probation, which no detector can hit.
    """

    threshold: float
    score: float
    detected_windows: int
    missed_windows: int
    false_positives: int
    missed_points: float
    timing_points: float
    false_positive_points: float
    unscorable_points: float


@dataclass(frozen=True, slots=True)
class _Row:
    anomaly_score: float
    sigma: float
    window: int  # corpus-wide window id; -1 outside every window


class CorpusScorer:
    """Scores one detector's anomaly scores over a set of labelled files, NAB's way."""

    def __init__(self) -> None:
        self._rows: list[_Row] = []
        self._sorted: list[_Row] | None = None
        self._windows = 0
        self._scorable: set[int] = set()

    def add_file(self, anomaly_scores: Sequence[float], windows: Sequence[Window]) -> None:
        """Add one file: its detector's anomaly score per row, and its labelled windows."""
        credits = credit_rows(len(anomaly_scores), windows)
        base = self._windows
        for score, credit in zip(anomaly_scores, credits, strict=True):
            if not math.isfinite(score):
                raise ValueError(f"anomaly scores must be finite, got {score}")
            if credit.probationary:
                continue
            window = -1 if credit.window is None else base + credit.window
            if window >= 0:
                self._scorable.add(window)
            self._rows.append(_Row(score, credit.sigma, window))
        self._windows += len(windows)
        self._sorted = None

    @property
    def windows(self) -> int:
        """How many labelled windows the corpus has, scorable or not."""
        return self._windows

    def null_score(self, profile: CostProfile) -> float:
        """The raw score of a detector that never detects: every scorable window missed."""
        return -profile.fn_weight * len(self._scorable)

    def perfect_score(self, profile: CostProfile) -> float:
        """The raw score of a detector that hits every window on its first row and nothing else."""
        return profile.tp_weight * self._windows

    def normalized(self, profile: CostProfile, raw: float) -> float:
        """`100 * (raw - null) / (perfect - null)`: 0 for the null detector, 100 for the perfect."""
        null = self.null_score(profile)
        span = self.perfect_score(profile) - null
        if span <= 0:
            raise ValueError("a corpus without anomaly windows cannot be normalised")
        return 100.0 * (raw - null) / span

    def at_threshold(self, profile: CostProfile, threshold: float) -> ThresholdScore:
        """The raw score when every row scoring at least `threshold` is a detection."""
        best, fp_total, false_positives = self._tally(profile, threshold)
        missed = len(self._scorable) - len(best)
        raw = fp_total + sum(best.values()) - profile.fn_weight * missed
        return ThresholdScore(threshold, raw, len(best), missed, false_positives)

    def _tally(self, profile: CostProfile, threshold: float) -> tuple[dict[int, float], float, int]:
        """Each detected window's best credit, the false positives' summed (negative) cost and
        their count, at `threshold`."""
        best: dict[int, float] = {}
        fp_total = 0.0
        false_positives = 0
        tp_scale = profile.tp_weight / _MAX_TP
        for row in self._rows:
            if row.anomaly_score < threshold:
                continue
            if row.window < 0:
                fp_total += row.sigma * profile.fp_weight
                false_positives += 1
            else:
                credit = row.sigma * tp_scale
                if credit > best.get(row.window, -math.inf):
                    best[row.window] = credit
        return best, fp_total, false_positives

    def losses(self, profile: CostProfile, threshold: float) -> Losses:
        """What the score at `threshold` loses, by cause (see `Losses`)."""
        best, fp_total, false_positives = self._tally(profile, threshold)
        missed = len(self._scorable) - len(best)
        raw = fp_total + sum(best.values()) - profile.fn_weight * missed
        span = self.perfect_score(profile) - self.null_score(profile)
        if span <= 0:
            raise ValueError("a corpus without anomaly windows cannot be normalised")
        points = 100.0 / span
        timing = profile.tp_weight * len(best) - sum(best.values())
        return Losses(
            threshold=threshold,
            score=self.normalized(profile, raw),
            detected_windows=len(best),
            missed_windows=missed,
            false_positives=false_positives,
            missed_points=(profile.tp_weight + profile.fn_weight) * missed * points,
            timing_points=timing * points,
            false_positive_points=0.0 - fp_total * points,  # not -0.0 when there are none
            unscorable_points=profile.tp_weight * (self._windows - len(self._scorable)) * points,
        )

    def sweep(self, profile: CostProfile) -> list[ThresholdScore]:
        """The raw score at every distinct anomaly score, highest threshold first.

        The first entry has threshold +inf: nothing detected.
        """
        rows = self._rows_by_score()
        tp_scale = profile.tp_weight / _MAX_TP
        best: dict[int, float] = {}
        fp_total = 0.0
        false_positives = 0
        tp_total = 0.0
        scorable = len(self._scorable)
        results = [ThresholdScore(math.inf, -profile.fn_weight * scorable, 0, scorable, 0)]
        for i, row in enumerate(rows):
            if row.window < 0:
                fp_total += row.sigma * profile.fp_weight
                false_positives += 1
            else:
                credit = row.sigma * tp_scale
                old = best.get(row.window)
                if old is None:
                    best[row.window] = credit
                    tp_total += credit
                elif credit > old:
                    best[row.window] = credit
                    tp_total += credit - old
            # Rows tied on score are detected together, so a threshold ends at the last of them.
            if i + 1 == len(rows) or rows[i + 1].anomaly_score != row.anomaly_score:
                missed = scorable - len(best)
                raw = fp_total + tp_total - profile.fn_weight * missed
                results.append(
                    ThresholdScore(row.anomaly_score, raw, len(best), missed, false_positives)
                )
        return results

    def best(self, profile: CostProfile) -> ThresholdScore:
        """The threshold with the highest raw score (the highest such threshold on a tie)."""
        return max(self.sweep(profile), key=lambda s: s.raw)

    def _rows_by_score(self) -> list[_Row]:
        if self._sorted is None:
            self._sorted = sorted(self._rows, key=lambda r: r.anomaly_score, reverse=True)
        return self._sorted


@dataclass(frozen=True, slots=True)
class Share:
    """One file's part of a corpus's score at one threshold: its raw score, and what the null
    and the perfect detector score on it.

    Every term of NAB's score is a file's own (a false positive is charged by its distance
    from a window of the same file), so a corpus's raw, null and perfect scores are the sums
    of its files' shares, and its normalised score is `100 * (raw - null) / (perfect - null)`
    over those sums. That is what lets `resampled_scores` score any multiset of files.
    """

    raw: float
    null: float
    perfect: float


def file_share(
    anomaly_scores: Sequence[float],
    windows: Sequence[Window],
    profile: CostProfile,
    threshold: float,
) -> Share:
    """One file's `Share` under `profile` when rows scoring `threshold` or more are detections."""
    scorer = CorpusScorer()
    scorer.add_file(anomaly_scores, windows)
    return Share(
        scorer.at_threshold(profile, threshold).raw,
        scorer.null_score(profile),
        scorer.perfect_score(profile),
    )


def file_span(n_rows: int, windows: Sequence[Window], profile: CostProfile) -> Share:
    """A file's `Share` when only its raw score is known (as in the per-file scores NAB
    publishes for its detectors): `raw` is 0 and `null` and `perfect` are the file's own.

    >>> profile = CostProfile("standard", 1.0, 0.11, 1.0)
    >>> file_span(1000, [Window(100, 119), Window(500, 549)], profile)  # the first in probation
    Share(raw=0.0, null=-1.0, perfect=2.0)
    """
    probation = probationary_length(n_rows)
    scorable = sum(1 for window in windows if window.last >= probation)
    return Share(0.0, -profile.fn_weight * scorable, profile.tp_weight * len(windows))


def resampled_scores(shares: Sequence[Share], draws: Iterable[Sequence[int]]) -> list[float | None]:
    """The normalised score of each draw, a draw being the indices of `shares` it takes (a
    file may be taken more than once); None for a draw whose files have no scorable window.

    >>> hit, miss = Share(1.0, -1.0, 1.0), Share(-1.0, -1.0, 1.0)
    >>> resampled_scores([hit, miss], [[0, 1], [0, 0], [1, 1]])
    [50.0, 100.0, 0.0]
    """
    out: list[float | None] = []
    for draw in draws:
        raw = sum(shares[i].raw for i in draw)
        null = sum(shares[i].null for i in draw)
        span = sum(shares[i].perfect for i in draw) - null
        out.append(100.0 * (raw - null) / span if span > 0 else None)
    return out
