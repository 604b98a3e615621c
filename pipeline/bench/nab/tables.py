"""What `bench nab` prints: the score table beside NAB's published scoreboard, where each
detector's points go (`--breakdown`), and the resampled intervals (`--resample`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from pipeline.bench.nab.breakdown import PartCounts, missed_windows
from pipeline.bench.nab.corpus import Half, NabFile
from pipeline.bench.nab.report import COLUMN_HELP, NabReport, PublishedReport
from pipeline.bench.nab.resample import Resampled, report_entry
from pipeline.bench.nab.score import PROFILE_NAMES, CostProfile

__all__ = [
    "PROFILE_HEADINGS",
    "REFERENCE_SCORES",
    "print_file_differences",
    "print_losses",
    "print_report",
    "print_resampled",
]


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
    ours = report_entry(report, files, profiles)
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
