"""`--breakdown`: the losses, the missed windows, and the parts that raised detections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.bench.nab.breakdown import count_parts, count_parts_by_specification, missed_windows
from pipeline.bench.nab.command import run_nab
from pipeline.bench.nab.corpus import load_corpus
from pipeline.bench.nab.run import DetectorRun, read_results, run_detector
from pipeline.bench.nab.score import Window
from pipeline.cli import main
from pipeline.errors import QuietpagerError
from tests.nab_layout import N_ROWS, write_nab, write_oracle, write_result


def test_breakdown_prints_the_losses_and_the_missed_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_nab(tmp_path / "nab")
    write_oracle(tmp_path / "results", tmp_path / "nab")
    for nab_file in load_corpus(tmp_path / "nab"):  # a detector that never fires
        write_result(
            tmp_path / "results" / "blind" / nab_file.category / f"blind_{nab_file.name}",
            ["timestamp", "anomaly_score"],
            [[stamp, "0.25"] for stamp in nab_file.timestamps],
        )
    argv = ["bench", "nab", "--data", str(tmp_path / "nab"), "--breakdown"]
    assert main([*argv, "--score-results", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    blind = printed[printed.index("blind: where the points go") :]
    oracle = printed[printed.index("oracle: where the points go") :]
    assert "2 missed windows 100.0" in blind  # null: all 100 points lost to the two misses
    assert "realThings/one.csv rows 290-319: 0.2500" in blind
    assert "realThings/two.csv rows 290-319: 0.2500" in blind
    assert "0 missed windows 0.0" in oracle
    assert "missed at the standard threshold" not in oracle
    files = load_corpus(tmp_path / "nab")
    (oracle_run,) = read_results(tmp_path / "results", files, ["oracle"])
    assert missed_windows(oracle_run, files, 0.5) == []
    assert [m.peak for m in missed_windows(oracle_run, files, 1.5)] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("scores", "parts", "hits", "outside"),
    [
        # row 0 is probationary (15% of 10 rows, rounded down), the window is rows 4-6
        ([1.0] * 10, ["point"] * 10, {"point": 1}, {"point": 6}),
        ([0.0] * 10, [""] * 10, {}, {}),
        # probation is never counted; only the first detection in the window is a hit
        (
            [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0],
            ["breach", "breach", "", "", "", "novelty", "point", "", "", ""],
            {"novelty": 1},
            {"breach": 1},
        ),
        # a score just under the threshold is no detection
        (
            [0.0, 0.0, 0.5, 0.49, 0.0, 0.0, 0.6, 0.0, 0.0, 0.7],
            ["", "", "drift", "point", "", "", "daily", "", "", "weekly"],
            {"daily": 1},
            {"drift": 1, "weekly": 1},
        ),
    ],
)
def test_count_parts(
    scores: list[float], parts: list[str], hits: dict[str, int], outside: dict[str, int]
) -> None:
    counted = count_parts(scores, parts, [Window(4, 6)], threshold=0.5)
    assert counted == (hits, outside)


def test_parts_are_counted_by_the_specification_and_add_up_to_the_losses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_nab(tmp_path)
    files = load_corpus(tmp_path)
    for name in ("likelihood", "shipped", "likelihood-reference", "likelihood-range"):
        run = run_detector(name, files)
        (report,) = run_nab(tmp_path, [name], breakdown=True)
        lost = report.losses["standard"]
        counted = count_parts_by_specification(run, files, lost.threshold)
        assert counted is not None
        assert sum(counted.hits.values()) == lost.detected_windows == 2
        assert sum(counted.outside.values()) == lost.false_positives
        assert counted.hits["breach"] == 2  # the shift to 50 is a new record
        printed = " ".join(capsys.readouterr().out.split())  # as one line, however wrapped
        assert "by the part that raised them" in printed
        assert "first detections in windows breach 2; outside windows" in printed
    golden = run_detector("golden", files)
    assert count_parts_by_specification(golden, files, 0.5) is None
    stage = run_detector("likelihood-stage", files)
    assert count_parts_by_specification(stage, files, 0.5) is None


def test_parts_are_not_counted_for_scores_the_specification_did_not_give(tmp_path: Path) -> None:
    write_nab(tmp_path)
    files = load_corpus(tmp_path)
    run = run_detector("likelihood", files)
    read_back = DetectorRun(run.detector, run.scores, run.points, None, None)  # from files
    assert count_parts_by_specification(read_back, files, 0.5) is None
    altered = dict(run.scores)
    altered["realThings/one.csv"] = [0.0] * N_ROWS
    tampered = DetectorRun(run.detector, altered, run.points, 1.0, 1)
    with pytest.raises(QuietpagerError, match=re.escape("scores realThings/one.csv differently")):
        count_parts_by_specification(tampered, files, 0.5)
