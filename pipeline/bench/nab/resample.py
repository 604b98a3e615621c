"""Paired resampling of the files: how much each detector's scores, and the differences
between detectors, owe to which files were run (`resample`).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.bench.nab.corpus import NabFile
from pipeline.bench.nab.report import NabReport, PublishedReport
from pipeline.bench.nab.score import CostProfile, Share, file_share, resampled_scores
from pipeline.errors import QuietpagerError

__all__ = ["Entry", "Interval", "Resampled", "report_entry", "resample"]


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
class Entry:
    """One detector as resampling sees it: its corpus score and its files' shares, per profile."""

    name: str
    observed: Mapping[str, float]
    shares: Mapping[str, Sequence[Share]]


def report_entry(
    report: NabReport, files: Sequence[NabFile], profiles: Sequence[CostProfile]
) -> Entry:
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
    return Entry(report.run.detector, {p.name: corpus[p.name].score for p in profiles}, shares)


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
    entries = [report_entry(report, files, profiles) for report in reports]
    entries += [
        Entry(
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
