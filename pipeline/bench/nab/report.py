"""A detector's NAB scores as the report lays them out: per column (which files, which
threshold) and per profile, for a run (`score_run`) and for a published detector rescored
from its per-file scores (`published_report`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.bench.nab.corpus import NabFile
from pipeline.bench.nab.published import PublishedScores
from pipeline.bench.nab.run import DetectorRun
from pipeline.bench.nab.score import (
    CorpusScorer,
    CostProfile,
    Losses,
    Share,
    file_span,
    resampled_scores,
)
from pipeline.errors import QuietpagerError

__all__ = [
    "COLUMN_HELP",
    "SHIPPED_THRESHOLD",
    "NabReport",
    "ProfileScore",
    "PublishedReport",
    "published_report",
    "score_run",
]

SHIPPED_THRESHOLD = 0.99  # the detect stage's default threshold on every signal


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
