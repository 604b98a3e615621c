"""Detector runs over the corpus: streaming every file through a detector, and the runs'
NAB-format result files, written for NAB's own tools or read back (ours, or any detector's
that a NAB checkout publishes) to be scored without running anything.
"""

from __future__ import annotations

import csv
import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from detectors.compiled import warm_up
from pipeline.bench.nab.corpus import NabFile
from pipeline.bench.nab.streams import DETECTORS
from pipeline.errors import QuietpagerError

__all__ = ["DetectorRun", "read_results", "run_detector", "unknown_detector", "write_results"]


@dataclass(frozen=True, slots=True)
class DetectorRun:
    """One detector's anomaly scores over a corpus, and what it cost."""

    detector: str
    scores: Mapping[str, Sequence[float]]  # by relative path
    points: int
    # None where the scores were read from result files rather than run here.
    microseconds_per_point: float | None
    bytes_per_series: int | None  # the largest pickle of a series' model at the end of its file


def unknown_detector(name: str) -> QuietpagerError:
    return QuietpagerError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")


def run_detector(name: str, files: Sequence[NabFile]) -> DetectorRun:
    """Stream every file through a fresh detector `name`: score each point (with its time),
    then learn it."""
    factory = DETECTORS.get(name)
    if factory is None:
        raise unknown_detector(name)
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
