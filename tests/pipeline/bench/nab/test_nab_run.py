"""Detector runs over the files, and their NAB-format result files written and read back."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from detectors.compiled import CompiledLikelihood
from detectors.likelihood import LikelihoodDetector
from pipeline.bench.nab.command import run_nab
from pipeline.bench.nab.corpus import load_corpus
from pipeline.bench.nab.run import read_results, run_detector, write_results
from pipeline.config import DetectConfig
from pipeline.detect import series_model
from pipeline.errors import QuietpagerError
from pipeline.model import Signal
from tests.nab_layout import N_ROWS, row_stamp, write_nab, write_oracle, write_result


def test_run_scores_each_point_before_learning_it(tmp_path: Path) -> None:
    write_nab(tmp_path)
    files = load_corpus(tmp_path)
    run = run_detector("shipped", files)
    assert isinstance(series_model(DetectConfig(), Signal.GENERIC), CompiledLikelihood)
    detector = LikelihoodDetector()  # the shipped model's Python specification
    expected = []
    for x, t in zip(files[2].values, files[2].seconds, strict=True):
        expected.append(detector.score_one(x, t))
        detector.learn_one(x, t)
    assert run.scores["realThings/one.csv"] == expected
    assert run.points == 4 * N_ROWS
    assert run.bytes_per_series is not None
    assert 0 < run.bytes_per_series < 4096


def test_result_files_read_back_score_as_the_run_did(tmp_path: Path) -> None:
    write_nab(tmp_path / "nab")
    files = load_corpus(tmp_path / "nab")
    run = run_detector("golden", files)
    write_results(run, files, tmp_path / "results")
    (back,) = read_results(tmp_path / "results", files)
    assert back.detector == "golden"
    assert back.scores == run.scores  # the written text reads back to the same floats
    assert back.points == run.points
    assert back.microseconds_per_point is None
    console = Console(file=io.StringIO(), width=200)
    (ran,) = run_nab(tmp_path / "nab", ["golden"], console=console)
    (scored,) = run_nab(tmp_path / "nab", [], console=console, score_results=tmp_path / "results")
    assert scored.columns == ran.columns


def _break(path: Path, row: int, column: str, value: str) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    rows[row][rows[0].index(column)] = value
    write_result(path, rows[0], rows[1:])


def _drop_column(path: Path, column: str) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    keep = [i for i, name in enumerate(rows[0]) if name != column]
    write_result(path, [rows[0][i] for i in keep], [[r[i] for i in keep] for r in rows[1:]])


def _truncate(path: Path, rows: int) -> None:
    with path.open(newline="") as handle:
        table = list(csv.reader(handle))
    write_result(path, table[0], table[1 : rows + 1])


ONE = "realThings/oracle_one.csv"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.unlink(), "oracle_one.csv: missing"),
        (lambda p: _drop_column(p, "anomaly_score"), "no 'anomaly_score' column"),
        (lambda p: _drop_column(p, "timestamp"), "no 'timestamp' column"),
        (lambda p: _break(p, 5, "anomaly_score", "high"), "oracle_one.csv:6: anomaly_score 'high'"),
        (lambda p: _break(p, 5, "anomaly_score", "1.5"), "'1.5' is not in [0, 1]"),
        (lambda p: _break(p, 5, "anomaly_score", "nan"), "'nan' is not in [0, 1]"),
        (lambda p: _break(p, 3, "timestamp", "2015-03-01 00:11:00"), "oracle_one.csv:4: timestamp"),
        (lambda p: _truncate(p, N_ROWS - 1), f"{N_ROWS - 1} rows where the data file has {N_ROWS}"),
    ],
)
def test_bad_result_files_are_named(
    tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    write_nab(tmp_path / "nab")
    write_oracle(tmp_path / "results", tmp_path / "nab")
    damage(tmp_path / "results" / "oracle" / ONE)
    files = load_corpus(tmp_path / "nab")
    with pytest.raises(QuietpagerError, match=re.escape(message)):
        read_results(tmp_path / "results", files)


def test_extra_rows_in_a_result_file_are_named(tmp_path: Path) -> None:
    write_nab(tmp_path / "nab")
    write_oracle(tmp_path / "results", tmp_path / "nab")
    path = tmp_path / "results" / "oracle" / ONE
    with path.open("a", newline="") as handle:
        handle.write(f"{row_stamp(N_ROWS)},1.0,0.0,0.5,0,0\n")
    with pytest.raises(QuietpagerError, match=f"oracle_one.csv:{N_ROWS + 2}: .*no more rows"):
        read_results(tmp_path / "results", load_corpus(tmp_path / "nab"))
