"""`quietpager bench nab` from end to end (`run_nab`): read the corpus and the profiles, run
the detectors or read their result files, score them, and print the tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from pipeline.bench.nab.breakdown import PartCounts, count_parts_by_specification
from pipeline.bench.nab.corpus import Half, load_corpus, load_cost_profiles
from pipeline.bench.nab.published import read_published
from pipeline.bench.nab.report import NabReport, published_report, score_run
from pipeline.bench.nab.resample import resample
from pipeline.bench.nab.run import read_results, run_detector, unknown_detector, write_results
from pipeline.bench.nab.score import PROFILE_NAMES
from pipeline.bench.nab.streams import DETECTORS
from pipeline.bench.nab.tables import (
    print_file_differences,
    print_losses,
    print_report,
    print_resampled,
)
from pipeline.errors import QuietpagerError

__all__ = ["run_nab"]


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
    profiles = load_cost_profiles(data)
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
                raise unknown_detector(name)
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
