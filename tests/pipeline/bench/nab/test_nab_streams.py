"""The detectors the bench runs as score streams: the stage, the likelihood, River's."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pipeline.bench.nab.corpus import load_corpus
from pipeline.bench.nab.run import run_detector
from pipeline.bench.nab.streams import RiverBaseline
from tests.nab_layout import write_nab


def test_likelihood_finds_both_shifts_and_its_stage_stream_emits_more(tmp_path: Path) -> None:
    write_nab(tmp_path)
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
    write_nab(tmp_path)
    files = load_corpus(tmp_path)
    run = run_detector("river-sad", files)
    scores = run.scores["realThings/one.csv"]
    # Past SAD's first rows (a spread of 0 makes anything score about 1), the shift's
    # first row scores highest.
    assert max(range(100, len(scores)), key=lambda i: scores[i]) == 300
