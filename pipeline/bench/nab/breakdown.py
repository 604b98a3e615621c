"""`--breakdown`'s figures: the labelled windows a run misses at a threshold, and which part
of a likelihood model raised its detections, read off the model's Python specification.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from detectors.compiled import CompiledLikelihood
from detectors.likelihood import LikelihoodDetector
from pipeline.bench.nab.corpus import NabFile
from pipeline.bench.nab.run import DetectorRun
from pipeline.bench.nab.score import Window, credit_rows, probationary_length
from pipeline.bench.nab.streams import DETECTORS
from pipeline.errors import QuietpagerError

__all__ = [
    "MissedWindow",
    "PartCounts",
    "count_parts",
    "count_parts_by_specification",
    "missed_windows",
]


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
