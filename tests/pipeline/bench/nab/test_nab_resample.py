"""Paired resampling of the files, published detectors included."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.bench.nab.command import run_nab
from pipeline.bench.nab.corpus import NabFile, load_corpus
from pipeline.bench.nab.published import read_published
from pipeline.bench.nab.report import NabReport, published_report
from pipeline.bench.nab.resample import resample
from pipeline.bench.nab.score import CostProfile, file_share, load_profiles
from pipeline.cli import main
from tests.nab_layout import write_nab, write_oracle, write_result


def _constant(root: Path, nab: Path, name: str, score: str, fires_in: str = "") -> None:
    """A detector `name` that scores `score` everywhere except on the first row of the
    windows of file `fires_in` (there 1.0)."""
    for nab_file in load_corpus(nab):
        firsts = {w.first for w in nab_file.windows} if nab_file.name == fires_in else set()
        write_result(
            root / name / nab_file.category / f"{name}_{nab_file.name}",
            ["timestamp", "anomaly_score"],
            [[s, "1.0" if i in firsts else score] for i, s in enumerate(nab_file.timestamps)],
        )


def test_resampling_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_nab(tmp_path / "nab")
    write_oracle(tmp_path / "results", tmp_path / "nab")
    _constant(tmp_path / "results", tmp_path / "nab", "blind", "0.25")
    _constant(tmp_path / "results", tmp_path / "nab", "onesided", "0.25", fires_in="one.csv")
    argv = ["bench", "nab", "--data", str(tmp_path / "nab"), "--resample", "200", "--seed", "5"]
    results = ["--score-results", str(tmp_path / "results")]
    assert main([*argv, *results, "--detector", "oracle", "--detector", "blind"]) == 0
    printed = capsys.readouterr().out
    assert "200 draws of 4 files with replacement (seed 5)" in printed
    # a perfect detector scores 100 on any draw, a blind one 0: no spread, and the blind one
    # is 100 points behind on every draw
    assert "oracle  standard 100.0 [100.0, 100.0]" in printed
    assert "blind   standard 0.0 [0.0, 0.0]" in printed
    assert "blind - oracle:  standard -100.0 [-100.0, -100.0] ahead in 0%" in printed

    # One window of two caught: a draw with k copies of `one` and m of `two` scores
    # 100 k / (k + m), so the scores spread about the corpus's 50.
    files = load_corpus(tmp_path / "nab")
    console = Console(file=io.StringIO(), width=200)
    reports = run_nab(
        tmp_path / "nab",
        ["oracle", "onesided"],
        console=console,
        score_results=tmp_path / "results",
    )
    profiles = load_profiles(tmp_path / "nab" / "profiles.json")
    spread = resample(reports, files, profiles, 200, seed=5)
    onesided = spread.scores[1]["standard"]
    assert onesided.observed == pytest.approx(50.0)
    assert 0.0 <= onesided.low < 50.0 < onesided.high <= 100.0
    behind = spread.differences[0]["standard"]
    assert behind.observed == pytest.approx(-50.0)
    assert (behind.low, behind.high) == pytest.approx((onesided.low - 100, onesided.high - 100))
    assert behind.ahead == 0.0
    assert resample(reports, files, profiles, 200, seed=5) == spread  # the seed fixes the draws
    assert resample(reports, files, profiles, 200, seed=6) != spread
    # The comparison is paired (both detectors on the same draws): a copy of a detector that
    # spreads differs from it by exactly 0 on every draw.
    _constant(tmp_path / "results", tmp_path / "nab", "copy", "0.25", fires_in="one.csv")
    reports = run_nab(
        tmp_path / "nab", ["onesided", "copy"], console=console, score_results=tmp_path / "results"
    )
    same = resample(reports, files, profiles, 200, seed=5).differences[0]["standard"]
    assert (same.observed, same.low, same.high, same.ahead) == (0.0, 0.0, 0.0, 0.0)


def _publish(
    root: Path, name: str, report: NabReport, files: list[NabFile], profiles: list[CostProfile]
) -> None:
    """`report`'s per-file raw scores written as NAB publishes a detector's, under `name`."""
    for profile in profiles:
        threshold = report.columns["corpus"][profile.name].threshold
        rows = [
            [
                name,
                profile.name,
                f.relative_path,
                repr(threshold),
                repr(
                    file_share(
                        report.run.scores[f.relative_path], f.windows, profile, threshold
                    ).raw
                ),
            ]
            for f in files
        ]
        write_result(
            root / name / f"{name}_{profile.name}_scores.csv",
            ["Detector", "Profile", "File", "Threshold", "Score"],
            [*rows, ["Totals", "", "", "", "0"]],
        )


def test_published_per_file_scores_compare_draw_by_draw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_nab(tmp_path / "nab")
    _constant(tmp_path / "results", tmp_path / "nab", "onesided", "0.25", fires_in="one.csv")
    files = load_corpus(tmp_path / "nab")
    console = Console(file=io.StringIO(), width=200)
    (onesided,) = run_nab(
        tmp_path / "nab", ["onesided"], console=console, score_results=tmp_path / "results"
    )
    # The same detector, published: its corpus and half scores are onesided's, and the
    # paired difference is exactly 0 on every draw.
    profiles = list(load_profiles(tmp_path / "nab" / "profiles.json"))
    _publish(tmp_path / "published", "Twin", onesided, files, profiles)
    twin = published_report(
        read_published(
            tmp_path / "published" / "Twin",
            [f.relative_path for f in files],
            [p.name for p in profiles],
        ),
        files,
        profiles,
    )
    for profile in profiles:
        assert twin.columns["corpus"][profile.name].score == pytest.approx(
            onesided.columns["corpus"][profile.name].score
        )
    assert set(twin.columns) == {"corpus", "half a", "half b"}
    for profile in profiles:  # one threshold serves both halves here, so they agree
        for theirs, ours in (("half a", "tune a"), ("half b", "test b")):
            assert twin.columns[theirs][profile.name].score == pytest.approx(
                onesided.columns[ours][profile.name].score
            )
    spread = resample([onesided], files, profiles, 200, seed=3, published=[twin])
    assert spread.names == ["onesided", "Twin"]
    assert spread.scores[1] == spread.scores[0]
    same = spread.differences[0]["reward_low_FN_rate"]
    assert (same.observed, same.low, same.high, same.ahead) == (0.0, 0.0, 0.0, 0.0)

    # Published scores that catch the window onesided misses in `two.csv` (+1 hit, no -1
    # miss in standard): the CLI prints the row, the file, and the paired gain.
    score_file = tmp_path / "published" / "Twin" / "Twin_standard_scores.csv"
    with score_file.open(newline="") as handle:
        table = list(csv.reader(handle))
    for row in table:
        if row[2] == "realThings/two.csv":
            row[4] = repr(float(row[4]) + 2.0)
    write_result(score_file, table[0], table[1:])
    out = io.StringIO()
    run_nab(
        tmp_path / "nab",
        ["onesided"],
        console=Console(file=out, width=250),
        score_results=tmp_path / "results",
        breakdown=True,
        resample_draws=50,
        published=[tmp_path / "published" / "Twin"],
    )
    printed = out.getvalue()
    assert re.search(r"Twin\s+│ corpus, per file\s+│\s+100\.0 │\s+50\.0 │\s+50\.0 │", printed)
    two = next(f for f in files if f.name == "two.csv")
    assert f"standard: +2.00 in all\n    ahead: {two.half} realThings/two.csv +2.00" in printed
    assert "low FN: +0.00 in all\n    ahead: nowhere\n    behind: nowhere" in printed
    assert re.search(r"Twin - onesided:\s+standard \+50\.0 \[\+0\.0, \+100\.0\]", printed)
    # and the command line passes the folder on
    argv = ["bench", "nab", "--data", str(tmp_path / "nab"), "--breakdown"]
    results = ["--score-results", str(tmp_path / "results"), "--detector", "onesided"]
    assert main([*argv, *results, "--published", str(tmp_path / "published" / "Twin")]) == 0
    assert "Twin - onesided, raw score by file" in " ".join(capsys.readouterr().out.split())
