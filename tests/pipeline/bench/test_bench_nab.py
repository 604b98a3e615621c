"""`bench nab` end to end on a tiny NAB-layout directory."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from detectors.compiled import CompiledLikelihood
from detectors.likelihood import LikelihoodDetector
from pipeline.bench.nab import (
    DetectorRun,
    NabFile,
    NabReport,
    RiverBaseline,
    count_parts,
    count_parts_by_specification,
    load_corpus,
    missed_windows,
    published_report,
    read_results,
    resample,
    run_detector,
    run_nab,
    split_half,
    write_results,
)
from pipeline.bench.nab_published import read_published
from pipeline.bench.nab_score import CostProfile, Window, file_share, load_profiles
from pipeline.cli import main
from pipeline.config import DetectConfig
from pipeline.detect import series_model
from pipeline.errors import QuietpagerError
from pipeline.model import Signal

N_ROWS = 400
START = datetime(2015, 3, 1)


def _stamp(i: int) -> str:
    return (START + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


def _write_nab(root: Path) -> None:
    """Two categories of two files; a level shift at row 300 in each `real*` file."""
    rng = random.Random(7)
    windows: dict[str, list[list[str]]] = {}
    for category, names in (("realThings", ["one", "two"]), ("artificialCalm", ["flat", "calm"])):
        folder = root / "data" / category
        folder.mkdir(parents=True)
        for name in names:
            shift = category.startswith("real")
            with (folder / f"{name}.csv").open("w", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["timestamp", "value"])
                for i in range(N_ROWS):
                    level = 50.0 if shift and i >= 300 else 10.0
                    writer.writerow([_stamp(i), f"{level + rng.gauss(0, 1):.3f}"])
            key = f"{category}/{name}.csv"
            windows[key] = [[_stamp(290) + ".000000", _stamp(319) + ".000000"]] if shift else []
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    matrix = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}
    profiles = {
        "standard": {"CostMatrix": matrix},
        "reward_low_FP_rate": {"CostMatrix": {**matrix, "fpWeight": 0.22}},
        "reward_low_FN_rate": {"CostMatrix": {**matrix, "fnWeight": 2.0}},
    }
    (root / "profiles.json").write_text(json.dumps(profiles))


def test_split_is_deterministic_and_balanced_per_category() -> None:
    paths = [f"cat{c}/file{i}.csv" for c in range(3) for i in range(5)]
    halves = split_half(paths)
    assert halves == split_half(reversed(paths))
    for c in range(3):
        in_a = sum(1 for i in range(5) if halves[f"cat{c}/file{i}.csv"] == "a")
        assert in_a == 3  # five files deal a, b, a, b, a


def test_load_corpus_reads_rows_windows_and_halves(tmp_path: Path) -> None:
    _write_nab(tmp_path)
    files = load_corpus(tmp_path)
    assert [f.relative_path for f in files] == [
        "artificialCalm/calm.csv",
        "artificialCalm/flat.csv",
        "realThings/one.csv",
        "realThings/two.csv",
    ]
    assert files[2].windows == (Window(290, 319),)
    assert {f.half for f in files if f.category == "realThings"} == {"a", "b"}
    assert len(load_corpus(tmp_path, "a")) == 2


def test_run_scores_each_point_before_learning_it(tmp_path: Path) -> None:
    _write_nab(tmp_path)
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


def test_bench_nab_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_nab(tmp_path / "nab")
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


def test_bench_nab_scores_a_clean_detection(tmp_path: Path) -> None:
    _write_nab(tmp_path)
    console = Console(file=io.StringIO(), width=200)
    (report,) = run_nab(tmp_path, ["golden"], console=console)
    # The per-point golden model fires only on the shift, 10 rows into each 30-row window
    # (the shipped model also fires on the records a young series sets): the hit is worth
    # h = sigma(-20/30) / sigma(-1) = 0.943742 a window; with 2 windows, standard and low FP
    # score 100 * (2h + 2) / 4, low FN 100 * (2h + 4) / 6.
    corpus = report.columns["corpus"]
    assert corpus["standard"].score == pytest.approx(97.1871, abs=1e-3)
    assert corpus["reward_low_FP_rate"].score == pytest.approx(97.1871, abs=1e-3)
    assert corpus["reward_low_FN_rate"].score == pytest.approx(98.1247, abs=1e-3)
    # At 0.99 the noise also fires now and then: a lower score, the same windows.
    assert 0 < report.columns["at 0.99"]["standard"].score < corpus["standard"].score
    assert corpus["standard"].threshold > 0.99
    # One window per half: half a alone scores 100 * (h + 1) / 2, the same figure.
    assert report.columns["tune a"]["standard"].score == pytest.approx(97.1871, abs=1e-3)
    assert report.columns["test b"]["standard"].score <= 100.0


def test_bench_nab_rejects_unknown_detector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_nab(tmp_path)
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


def test_likelihood_finds_both_shifts_and_its_stage_stream_emits_more(tmp_path: Path) -> None:
    _write_nab(tmp_path)
    files = load_corpus(tmp_path)
    shipped = run_detector("likelihood", files)
    stage = run_detector("likelihood-stage", files)
    for nab_file in files:
        scores = shipped.scores[nab_file.relative_path]
        emitted = stage.scores[nab_file.relative_path]
        for window in nab_file.windows:
            assert max(scores[window.first : window.last + 1]) >= 0.99
        assert sum(s >= 0.99 for s in emitted) >= sum(s >= 0.99 for s in scores)
    # The shift lasts: the stage goes on emitting it while the detector's score is muted.
    one = "realThings/one.csv"
    assert sum(s >= 0.99 for s in stage.scores[one][300:330]) > sum(
        s >= 0.99 for s in shipped.scores[one][300:330]
    )


def test_result_files_read_back_score_as_the_run_did(tmp_path: Path) -> None:
    _write_nab(tmp_path / "nab")
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


def _write_result(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _oracle(root: Path, nab: Path) -> None:
    """An `oracle` detector in NAB's own results layout (extra columns included) that fires
    on the first row of each window and nowhere else."""
    for nab_file in load_corpus(nab):
        firsts = {window.first for window in nab_file.windows}
        _write_result(
            root / "oracle" / nab_file.category / f"oracle_{nab_file.name}",
            ["timestamp", "value", "anomaly_score", "raw_score", "label", "S(t)_standard"],
            [
                [stamp, str(value), "1.0" if i in firsts else "0.0", "0.5", "0", "0"]
                for i, (stamp, value) in enumerate(
                    zip(nab_file.timestamps, nab_file.values, strict=True)
                )
            ],
        )


def test_scoring_result_files_of_a_perfect_detector_gives_100(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_nab(tmp_path / "nab")
    _oracle(tmp_path / "results", tmp_path / "nab")
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


def _break(path: Path, row: int, column: str, value: str) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    rows[row][rows[0].index(column)] = value
    _write_result(path, rows[0], rows[1:])


def _drop_column(path: Path, column: str) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    keep = [i for i, name in enumerate(rows[0]) if name != column]
    _write_result(path, [rows[0][i] for i in keep], [[r[i] for i in keep] for r in rows[1:]])


def _truncate(path: Path, rows: int) -> None:
    with path.open(newline="") as handle:
        table = list(csv.reader(handle))
    _write_result(path, table[0], table[1 : rows + 1])


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
    _write_nab(tmp_path / "nab")
    _oracle(tmp_path / "results", tmp_path / "nab")
    damage(tmp_path / "results" / "oracle" / ONE)
    files = load_corpus(tmp_path / "nab")
    with pytest.raises(QuietpagerError, match=re.escape(message)):
        read_results(tmp_path / "results", files)


def test_extra_rows_in_a_result_file_are_named(tmp_path: Path) -> None:
    _write_nab(tmp_path / "nab")
    _oracle(tmp_path / "results", tmp_path / "nab")
    path = tmp_path / "results" / "oracle" / ONE
    with path.open("a", newline="") as handle:
        handle.write(f"{_stamp(N_ROWS)},1.0,0.0,0.5,0,0\n")
    with pytest.raises(QuietpagerError, match=f"oracle_one.csv:{N_ROWS + 2}: .*no more rows"):
        read_results(tmp_path / "results", load_corpus(tmp_path / "nab"))


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
    _write_nab(tmp_path / "nab")
    _oracle(tmp_path / "results", tmp_path / "nab")
    argv = [a.format(root=tmp_path) for a in args]
    assert main(["bench", "nab", "--data", str(tmp_path / "nab"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_breakdown_prints_the_losses_and_the_missed_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_nab(tmp_path / "nab")
    _oracle(tmp_path / "results", tmp_path / "nab")
    for nab_file in load_corpus(tmp_path / "nab"):  # a detector that never fires
        _write_result(
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
    _write_nab(tmp_path)
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
    _write_nab(tmp_path)
    files = load_corpus(tmp_path)
    run = run_detector("likelihood", files)
    read_back = DetectorRun(run.detector, run.scores, run.points, None, None)  # from files
    assert count_parts_by_specification(read_back, files, 0.5) is None
    altered = dict(run.scores)
    altered["realThings/one.csv"] = [0.0] * N_ROWS
    tampered = DetectorRun(run.detector, altered, run.points, 1.0, 1)
    with pytest.raises(QuietpagerError, match=re.escape("scores realThings/one.csv differently")):
        count_parts_by_specification(tampered, files, 0.5)


def _baseline_scores(kind: str, values: list[float]) -> list[float]:
    detector = RiverBaseline(kind)  # type: ignore[arg-type]
    return [detector.step(x)[0] for x in values]


@pytest.mark.parametrize(
    ("kind", "ranks_the_spike_first"),
    # Half-space trees on min-max scaled noise score most points near 0.99: River's own
    # behaviour, and why that row scores low on NAB; only the range is checked there.
    [("sad", True), ("gaussian", True), ("gaussian-z", True), ("hst", False)],
)
def test_river_baselines_score_in_unit_range(kind: str, ranks_the_spike_first: bool) -> None:
    rng = random.Random(3)
    values = [10.0 + rng.gauss(0, 1) for _ in range(600)]
    values[500] = 30.0
    scores = _baseline_scores(kind, values)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(set(scores[300:])) > 10  # it learns: the scores move with the values
    if ranks_the_spike_first:
        assert scores[500] > max(scores[300:500])


def test_river_gaussian_rescaled_keeps_the_order_the_cdf_rounds_away() -> None:
    rng = random.Random(5)
    values = [rng.gauss(0, 1) for _ in range(300)] + [40.0, 30.0]
    shipped = _baseline_scores("gaussian", values)
    rescaled = _baseline_scores("gaussian-z", values)
    assert shipped[300] == shipped[301] == 1.0  # both beyond 8 sigmas: the CDF ties them
    assert rescaled[300] > rescaled[301] > 0.9  # 40 is further out than 30
    assert rescaled[:100] == [0.0] * 100  # the grace period
    # The same order as SAD (mean and spread of everything seen), so the same NAB score.
    sad = _baseline_scores("sad", values)
    order = sorted(range(100, 302), key=lambda i: rescaled[i])
    assert order == sorted(range(100, 302), key=lambda i: sad[i])


def test_river_gaussian_on_a_constant_series() -> None:
    values = [45.0] * 200 + [46.0]
    # As shipped, River's scorer gives every point of a flat line 1.0 (its CDF falls back to 0).
    assert _baseline_scores("gaussian", values)[150:] == [1.0] * 51
    assert _baseline_scores("gaussian-z", values)[150:] == [0.0] * 50 + [1.0]


def test_river_rows_run_in_the_bench(tmp_path: Path) -> None:
    _write_nab(tmp_path)
    files = load_corpus(tmp_path)
    run = run_detector("river-sad", files)
    scores = run.scores["realThings/one.csv"]
    # Past SAD's first rows (a spread of 0 makes anything score about 1), the shift's
    # first row scores highest.
    assert max(range(100, len(scores)), key=lambda i: scores[i]) == 300


def _constant(root: Path, nab: Path, name: str, score: str, fires_in: str = "") -> None:
    """A detector `name` that scores `score` everywhere except on the first row of the
    windows of file `fires_in` (there 1.0)."""
    for nab_file in load_corpus(nab):
        firsts = {w.first for w in nab_file.windows} if nab_file.name == fires_in else set()
        _write_result(
            root / name / nab_file.category / f"{name}_{nab_file.name}",
            ["timestamp", "anomaly_score"],
            [[s, "1.0" if i in firsts else score] for i, s in enumerate(nab_file.timestamps)],
        )


def test_resampling_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_nab(tmp_path / "nab")
    _oracle(tmp_path / "results", tmp_path / "nab")
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


@pytest.mark.parametrize("draws", ["1", "-3"])
def test_bench_nab_rejects_too_few_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], draws: str
) -> None:
    _write_nab(tmp_path / "nab")
    argv = ["bench", "nab", "--data", str(tmp_path / "nab"), "--resample", draws]
    assert main(argv) == 2
    assert "--resample needs at least 2 draws" in capsys.readouterr().err


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
        _write_result(
            root / name / f"{name}_{profile.name}_scores.csv",
            ["Detector", "Profile", "File", "Threshold", "Score"],
            [*rows, ["Totals", "", "", "", "0"]],
        )


def test_published_per_file_scores_compare_draw_by_draw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_nab(tmp_path / "nab")
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
    _write_result(score_file, table[0], table[1:])
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


def test_bench_nab_refuses_bad_published_scores_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_nab(tmp_path / "nab")
    argv = ["bench", "nab", "--data", str(tmp_path / "nab"), "--detector", "golden"]
    written = tmp_path / "written"
    missing = tmp_path / "results" / "ARTime"
    assert main([*argv, "--results-dir", str(written), "--published", str(missing)]) == 2
    assert "ARTime: no such folder of published scores" in capsys.readouterr().err
    assert not written.exists()  # refused before golden ran
