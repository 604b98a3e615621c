"""The per-file scores NAB publishes for its detectors, read for a comparison file by file.

A NAB checkout's `results/<detector>/` folder holds, besides the detector's result files, one
`<detector>_<profile>_scores.csv` per cost profile, written by NAB's own scorer: a row per
data file with the file's raw score at the one threshold NAB chose for that profile over the
whole corpus (columns `Detector, Profile, File, Threshold, Score, TP, TN, FP, FN,
Total_Count`, then a `Totals` row). Those raw scores are what `bench nab --published` reads:
a corpus's normalised score is a sum of per-file terms (`score.Share`), so the published
detector can be rescored on any set of files, half a and half b included, and resampled on
the same draws as the detectors run here, without its anomaly scores.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import QuietpagerError

__all__ = ["PublishedScores", "read_published"]

_NEEDED = ("Detector", "Profile", "File", "Threshold", "Score")


@dataclass(frozen=True, slots=True)
class PublishedScores:
    """A published detector's raw score per file and profile, at NAB's threshold per profile.

    `raw[profile][relative_path]` is the file's raw score; `thresholds[profile]` the
    threshold it was scored at.
    """

    detector: str
    thresholds: Mapping[str, float]
    raw: Mapping[str, Mapping[str, float]]


def read_published(
    folder: Path, relative_paths: Iterable[str], profiles: Sequence[str]
) -> PublishedScores:
    """Read `folder/<detector>_<profile>_scores.csv` for each profile, `<detector>` being the
    folder's name (NAB's layout: `results/ARTime/ARTime_standard_scores.csv`).

    Every file in `relative_paths` (the files run, e.g. `realKnownCause/nyc_taxi.csv`) needs
    exactly one row; rows for other files are skipped, so a half of the corpus can be
    compared. Anything missing or malformed raises a `QuietpagerError` naming the file (and
    the line).
    """
    if not folder.is_dir():
        raise QuietpagerError(f"{folder}: no such folder of published scores")
    detector = folder.name
    if not any(folder.glob(f"{detector}_*_scores.csv")):
        inside = sorted(d.name for d in folder.iterdir() if any(d.glob(f"{d.name}_*_scores.csv")))
        hint = f"; name one detector's folder, e.g. {folder / inside[0]}" if inside else ""
        raise QuietpagerError(f"{folder}: no {detector}_<profile>_scores.csv files{hint}")
    wanted = set(relative_paths)
    thresholds: dict[str, float] = {}
    raw: dict[str, dict[str, float]] = {}
    for profile in profiles:
        path = folder / f"{detector}_{profile}_scores.csv"
        thresholds[profile], raw[profile] = _read_profile(path, detector, profile, wanted)
    return PublishedScores(detector, thresholds, raw)


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise QuietpagerError(f"{path}:{line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise QuietpagerError(f"{path}:{line}: {column} {text!r} is not finite")
    return value


def _read_profile(
    path: Path, detector: str, profile: str, wanted: set[str]
) -> tuple[float, dict[str, float]]:
    if not path.is_file():
        raise QuietpagerError(
            f"{path}: missing (a published detector needs <detector>_<profile>_scores.csv "
            "for every profile)"
        )
    threshold: float | None = None
    scores: dict[str, float] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for needed in _NEEDED:
            if needed not in columns:
                raise QuietpagerError(f"{path}: no {needed!r} column (has {', '.join(columns)})")
        for row in reader:
            line = reader.line_num
            if (row["Detector"] or "").strip() == "Totals":
                continue
            for column, expected in (("Detector", detector), ("Profile", profile)):
                if (row[column] or "").strip() != expected:
                    raise QuietpagerError(
                        f"{path}:{line}: {column} {row[column]!r} where {expected!r} was expected"
                    )
            name = (row["File"] or "").strip()
            if name not in wanted:
                continue
            if name in scores:
                raise QuietpagerError(f"{path}:{line}: a second row for {name}")
            at = _number(path, line, "Threshold", row["Threshold"])
            if threshold is not None and at != threshold:
                raise QuietpagerError(
                    f"{path}:{line}: threshold {at} where earlier rows have {threshold} "
                    "(NAB scores every file of a profile at one threshold)"
                )
            threshold = at
            scores[name] = _number(path, line, "Score", row["Score"])
    missing = sorted(wanted - scores.keys())
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise QuietpagerError(f"{path}: no row for {missing[0]}{more}")
    if threshold is None:
        raise QuietpagerError(f"{path}: no file to compare")
    return threshold, scores
