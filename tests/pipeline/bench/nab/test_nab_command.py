"""`bench nab` end to end from the command line on a tiny NAB-layout directory."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.bench.nab.command import run_nab
from pipeline.cli import main
from tests.nab_layout import N_ROWS, write_nab, write_oracle


def test_bench_nab_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_nab(tmp_path / "nab")
    out = tmp_path / "results"
    code = main(["bench", "nab", "--data", str(tmp_path / "nab"), "--results-dir", str(out)])
    assert code == 0
    result = out / "shipped" / "realThings" / "shipped_one.csv"
    with result.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(rows) == N_ROWS
    assert [r["label"] for r in rows[289:291]] == ["0", "1"]
    assert [r["label"] for r in rows[319:321]] == ["1", "0"]
    assert float(rows[300]["anomaly_score"]) > 0.99  # the shift is seen on its first row
    assert len(list(out.glob("shipped/*/*.csv"))) == 4
    printed = capsys.readouterr().out
    for needle in ("tune a", "test b", "at 0.99", "ARTime", "74.9", "µs/point"):
        assert needle in printed


def test_bench_nab_rejects_unknown_detector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_nab(tmp_path)
    assert main(["bench", "nab", "--data", str(tmp_path), "--detector", "nope"]) == 2
    assert "unknown detector 'nope'" in capsys.readouterr().err
    # named before anything runs: the known detector before the typo writes nothing
    argv = ["bench", "nab", "--data", str(tmp_path), "--results-dir", str(tmp_path / "out")]
    assert main([*argv, "--detector", "shipped", "--detector", "nope"]) == 2
    assert "unknown detector 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bench_nab_rejects_a_directory_that_is_not_nab(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "nab", "--data", str(tmp_path)]) == 2
    assert "not a NAB directory" in capsys.readouterr().err


def test_scoring_result_files_of_a_perfect_detector_gives_100(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_nab(tmp_path / "nab")
    write_oracle(tmp_path / "results", tmp_path / "nab")
    (tmp_path / "results" / "empty").mkdir()  # a folder without result files is not a detector
    code = main(
        [
            "bench",
            "nab",
            "--data",
            str(tmp_path / "nab"),
            "--score-results",
            str(tmp_path / "results"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "oracle" in printed
    assert "empty" not in printed
    console = Console(file=io.StringIO(), width=200)
    (report,) = run_nab(
        tmp_path / "nab", ["oracle"], console=console, score_results=tmp_path / "results"
    )
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert report.columns["corpus"][profile].score == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--score-results", "{root}/nowhere"], "no such results directory"),
        (["--score-results", "{root}/nab"], "no result files"),
        (["--score-results", "{root}/results", "--detector", "nope"], "no results for detector"),
        (
            ["--score-results", "{root}/results", "--results-dir", "{root}/out"],
            "give one",
        ),
    ],
)
def test_bench_nab_score_results_rejects_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    write_nab(tmp_path / "nab")
    write_oracle(tmp_path / "results", tmp_path / "nab")
    argv = [a.format(root=tmp_path) for a in args]
    assert main(["bench", "nab", "--data", str(tmp_path / "nab"), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("draws", ["1", "-3"])
def test_bench_nab_rejects_too_few_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], draws: str
) -> None:
    write_nab(tmp_path / "nab")
    argv = ["bench", "nab", "--data", str(tmp_path / "nab"), "--resample", draws]
    assert main(argv) == 2
    assert "--resample needs at least 2 draws" in capsys.readouterr().err


def test_bench_nab_refuses_bad_published_scores_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_nab(tmp_path / "nab")
    argv = ["bench", "nab", "--data", str(tmp_path / "nab"), "--detector", "golden"]
    written = tmp_path / "written"
    missing = tmp_path / "results" / "ARTime"
    assert main([*argv, "--results-dir", str(written), "--published", str(missing)]) == 2
    assert "ARTime: no such folder of published scores" in capsys.readouterr().err
    assert not written.exists()  # refused before golden ran
