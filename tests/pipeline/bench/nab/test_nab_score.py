"""NAB scoring rules, checked on small hand-computed cases."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline.bench.nab.score import (
    CorpusScorer,
    CostProfile,
    Share,
    Window,
    credit_rows,
    file_share,
    file_span,
    load_profiles,
    probationary_length,
    resampled_scores,
    scaled_sigmoid,
    windows_from_timestamps,
)

STANDARD = CostProfile("standard", 1.0, 0.11, 1.0)
LOW_FP = CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0)
LOW_FN = CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0)

# 20 rows: rows 0-2 probationary (floor(0.15 * 20) = 3), one window on rows 10-13 (width 4).
N_ROWS = 20
WINDOW = Window(10, 13)


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        (-1.0, 0.986614),  # window start: 2/(1+e^-5)-1
        (-0.5, 0.848283),  # half-way into a window: 2/(1+e^-2.5)-1
        (0.0, 0.0),  # window end
        (1.0, -0.986614),  # one window length past the end
        (3.0, -0.999999),  # still the sigmoid at exactly 3
        (3.01, -1.0),  # beyond 3: a full false positive
    ],
)
def test_scaled_sigmoid(y: float, expected: float) -> None:
    assert scaled_sigmoid(y) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("n_rows", "expected"),
    [
        (20, 3),  # floor(0.15 * 20)
        (7, 1),  # floor(1.05)
        (4032, 604),  # floor(604.8), a typical NAB file
        (5000, 750),  # exactly at the cap
        (22695, 750),  # long files are capped at 750
    ],
)
def test_probationary_length(n_rows: int, expected: int) -> None:
    assert probationary_length(n_rows) == expected


def _scores(*detections: int, n_rows: int = N_ROWS) -> list[float]:
    return [1.0 if i in detections else 0.0 for i in range(n_rows)]


@pytest.mark.parametrize(
    ("profile", "detections", "expected"),
    [
        (STANDARD, (), -1.0),  # nothing detected: one missed window
        (LOW_FN, (), -2.0),  # a miss costs fn_weight 2
        (STANDARD, (10,), 1.0),  # hit on the window's first row: exactly tp_weight
        (STANDARD, (12,), 0.859792),  # y=-(13-12+1)/4=-0.5: 0.848283/0.986614
        (STANDARD, (13,), 0.562125),  # last row, y=-1/4: 0.554600/0.986614
        (STANDARD, (12, 10), 1.0),  # only the earliest detection in a window counts
        (STANDARD, (11, 12, 13), 0.966989),  # earliest is row 11, y=-0.75: 0.954045/0.986614
        (STANDARD, (5,), -1.11),  # FP with no window before it: -fp_weight, plus the miss
        (LOW_FP, (5,), -1.22),  # the same FP at fp_weight 0.22
        (LOW_FN, (5,), -2.11),  # the same FP and a miss worth 2
        (STANDARD, (2,), -1.0),  # a probationary row is not scored at all
        (STANDARD, (14,), -1.075049),  # FP 1 row past the window: y=1/(4-1), -0.682262*0.11
        (LOW_FP, (14,), -1.150098),  # the same FP at fp_weight 0.22
        (STANDARD, (19,), -1.109990),  # FP 6 rows past: y=6/3=2, -0.999909*0.11
        (STANDARD, (10, 14), 0.924951),  # a hit and a trailing FP: 1 - 0.075049
    ],
)
def test_raw_score_of_one_file(
    profile: CostProfile, detections: tuple[int, ...], expected: float
) -> None:
    scorer = CorpusScorer()
    scorer.add_file(_scores(*detections), [WINDOW])
    assert scorer.at_threshold(profile, 0.5).raw == pytest.approx(expected, abs=1e-6)


def test_false_positive_past_a_long_gap_costs_a_full_weight() -> None:
    # 100 rows (probation 15), window 20-23; row 40 is 17/3 > 3 window lengths past its end.
    scorer = CorpusScorer()
    scorer.add_file(_scores(20, 40, n_rows=100), [Window(20, 23)])
    assert scorer.at_threshold(STANDARD, 0.5).raw == pytest.approx(1.0 - 0.11)


def test_false_positive_is_measured_from_the_latest_window() -> None:
    # 100 rows, windows 20-23 and 50-59 (width 10); row 61 is 2/9 past the second window.
    scorer = CorpusScorer()
    scorer.add_file(_scores(61, n_rows=100), [Window(20, 23), Window(50, 59)])
    expected = -2.0 + scaled_sigmoid(2 / 9) * 0.11
    assert scorer.at_threshold(STANDARD, 0.5).raw == pytest.approx(expected)


def test_credit_rows_marks_windows_and_probation() -> None:
    credits = credit_rows(N_ROWS, [WINDOW])
    assert [c.probationary for c in credits[:4]] == [True, True, True, False]
    assert [c.window for c in credits[9:15]] == [None, 0, 0, 0, 0, None]
    assert credits[5].sigma == -1.0  # no window before it


def test_window_inside_probation_is_neither_hit_nor_miss() -> None:
    scorer = CorpusScorer()
    scorer.add_file(_scores(), [Window(0, 2)])
    assert scorer.null_score(STANDARD) == 0.0
    assert scorer.perfect_score(STANDARD) == 1.0  # NAB counts every labelled window here
    assert scorer.at_threshold(STANDARD, 0.5).raw == 0.0


def _two_file_corpus() -> CorpusScorer:
    scorer = CorpusScorer()
    first = [0.0] * N_ROWS
    first[5], first[10] = 0.95, 0.9  # an early FP, then a hit on the window's first row
    second = [0.0] * N_ROWS
    second[7] = 0.8  # an FP in a file with no windows
    scorer.add_file(first, [WINDOW])
    scorer.add_file(second, [])
    return scorer


def test_sweep_gives_the_score_at_every_distinct_threshold() -> None:
    sweep = _two_file_corpus().sweep(STANDARD)
    assert [s.threshold for s in sweep[:4]] == [math.inf, 0.95, 0.9, 0.8]
    # nothing; the FP at 0.95; plus the hit at 0.9; plus the second file's FP at 0.8
    assert [s.raw for s in sweep[:4]] == pytest.approx([-1.0, -1.11, -0.11 + 1.0, 0.78])
    assert (sweep[2].detected_windows, sweep[2].missed_windows, sweep[2].false_positives) == (
        1,
        0,
        1,
    )


def test_sweep_agrees_with_scoring_at_each_threshold() -> None:
    scorer = _two_file_corpus()
    for profile in (STANDARD, LOW_FP, LOW_FN):
        for entry in scorer.sweep(profile):
            assert scorer.at_threshold(profile, entry.threshold).raw == pytest.approx(entry.raw)


def test_best_threshold_and_normalised_score() -> None:
    scorer = _two_file_corpus()
    best = scorer.best(STANDARD)
    assert best.threshold == 0.9
    assert best.raw == pytest.approx(0.89)
    # null -1, perfect +1: 100 * (0.89 + 1) / 2
    assert scorer.normalized(STANDARD, best.raw) == pytest.approx(94.5)
    assert scorer.normalized(STANDARD, scorer.null_score(STANDARD)) == 0.0
    assert scorer.normalized(STANDARD, scorer.perfect_score(STANDARD)) == 100.0


def _two_files() -> list[tuple[list[float], list[Window]]]:
    first = [0.0] * N_ROWS
    first[5], first[10] = 0.95, 0.9  # as in `_two_file_corpus`
    second = [0.0] * N_ROWS
    second[7] = 0.8
    return [(first, [WINDOW]), (second, [])]


@pytest.mark.parametrize("profile", [STANDARD, LOW_FP, LOW_FN])
@pytest.mark.parametrize("threshold", [math.inf, 0.95, 0.9, 0.8, 0.0])
def test_file_shares_add_up_to_the_corpus_score(profile: CostProfile, threshold: float) -> None:
    corpus = _two_file_corpus()
    shares = [file_share(s, w, profile, threshold) for s, w in _two_files()]
    raw = corpus.at_threshold(profile, threshold).raw
    assert sum(share.raw for share in shares) == pytest.approx(raw)
    assert sum(share.null for share in shares) == corpus.null_score(profile)
    assert sum(share.perfect for share in shares) == corpus.perfect_score(profile)
    assert resampled_scores(shares, [[0, 1]]) == [pytest.approx(corpus.normalized(profile, raw))]


@pytest.mark.parametrize("profile", [STANDARD, LOW_FP, LOW_FN])
@pytest.mark.parametrize(
    ("n_rows", "windows"),
    [
        (20, []),
        (20, [WINDOW]),
        (20, [Window(0, 2)]),  # wholly inside probation: neither hit nor miss, but counted
        (20, [Window(1, 4), Window(10, 13)]),  # the first straddles probation's end
        (1000, [Window(100, 149), Window(600, 649), Window(900, 949)]),
        (10_000, [Window(700, 749), Window(750, 799)]),  # probation capped at 750 rows
        (10_000, [Window(700, 750)]),  # its last row is the first one scored
    ],
)
def test_file_span_is_the_null_and_perfect_a_scorer_gives(
    profile: CostProfile, n_rows: int, windows: list[Window]
) -> None:
    span = file_span(n_rows, windows, profile)
    share = file_share([0.5] * n_rows, windows, profile, 0.9)
    assert (span.raw, span.null, span.perfect) == (0.0, share.null, share.perfect)


def test_resampled_scores_hand_computed() -> None:
    first, second = (file_share(s, w, STANDARD, 0.9) for s, w in _two_files())
    # first: an FP at row 5 (-0.11) and a first-row hit (+1); null -1, perfect 1
    assert (first.raw, first.null, first.perfect) == pytest.approx((0.89, -1.0, 1.0))
    assert second == Share(0.0, 0.0, 0.0)  # no detection at 0.9, no window
    scores = resampled_scores([first, second], [[0, 1], [0, 0], [1, 1], [1, 0]])
    assert scores == [pytest.approx(94.5), pytest.approx(94.5), None, pytest.approx(94.5)]
    # at 0.8 the second file's FP counts (-0.11): taken twice with the first file once
    first, second = (file_share(s, w, STANDARD, 0.8) for s, w in _two_files())
    assert resampled_scores([first, second], [[0, 1, 1]]) == [pytest.approx(100 * 1.67 / 2)]


def test_best_is_nothing_when_every_detection_costs() -> None:
    # 100 rows, window 20-23: at 0.5 only an FP; at 0 the hit comes with 80 FPs.
    scorer = CorpusScorer()
    scorer.add_file([0.5 if i == 16 else 0.0 for i in range(100)], [Window(20, 23)])
    assert scorer.best(STANDARD).threshold == math.inf


def test_normalising_needs_windows() -> None:
    scorer = CorpusScorer()
    scorer.add_file(_scores(5), [])
    with pytest.raises(ValueError, match="without anomaly windows"):
        scorer.normalized(STANDARD, 0.0)


def test_non_finite_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        CorpusScorer().add_file([math.nan] * N_ROWS, [WINDOW])


def test_windows_from_timestamps_are_inclusive_row_ranges() -> None:
    start = datetime(2014, 4, 1)
    stamps = [start + timedelta(minutes=5 * i) for i in range(10)]
    limits = [
        (stamps[2], stamps[4]),  # exact rows 2-4
        (stamps[7] - timedelta(seconds=1), stamps[9] + timedelta(days=1)),  # clipped to rows
        (start - timedelta(days=2), start - timedelta(days=1)),  # before the data: dropped
    ]
    assert windows_from_timestamps(stamps, limits) == [Window(2, 4), Window(7, 9)]


def test_load_profiles_reads_nab_cost_matrices(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    matrix = {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}
    path.write_text(json.dumps({"reward_low_FN_rate": {"CostMatrix": matrix}}))
    assert load_profiles(path) == (LOW_FN,)


def _lossy_corpus() -> CorpusScorer:
    """Three files with WINDOW-like windows: one hit late (row 12) after an FP (row 5), one
    missed, one wholly inside probation."""
    scorer = CorpusScorer()
    scorer.add_file(_scores(5, 12), [WINDOW])
    scorer.add_file(_scores(), [WINDOW])
    scorer.add_file(_scores(), [Window(0, 2)])
    return scorer


def test_losses_by_cause_hand_computed() -> None:
    # Standard: null -2 (two scorable windows), perfect 3 (three windows): 20 points a unit.
    lost = _lossy_corpus().losses(STANDARD, 0.5)
    hit = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)  # row 12 of window 10-13: 0.859792
    assert (lost.detected_windows, lost.missed_windows, lost.false_positives) == (1, 1, 1)
    assert lost.missed_points == pytest.approx(40.0)  # (tp 1 + fn 1) * 20
    assert lost.timing_points == pytest.approx((1 - hit) * 20)
    assert lost.false_positive_points == pytest.approx(0.11 * 20)
    assert lost.unscorable_points == pytest.approx(20.0)
    assert lost.score == pytest.approx(100 * (hit - 0.11 - 1.0 + 2) / 5)


def test_no_detection_outside_windows_costs_a_plain_zero() -> None:
    lost = _lossy_corpus().losses(STANDARD, 1.5)  # nothing detected
    assert lost.false_positives == 0
    assert math.copysign(1.0, lost.false_positive_points) == 1.0  # 0.0, printed "0.0", not "-0.0"


@pytest.mark.parametrize("profile", [STANDARD, LOW_FP, LOW_FN])
@pytest.mark.parametrize("threshold", [0.5, 1.5])
def test_losses_add_up_to_what_the_score_lacks(profile: CostProfile, threshold: float) -> None:
    scorer = _lossy_corpus()
    lost = scorer.losses(profile, threshold)
    assert lost.score == pytest.approx(
        scorer.normalized(profile, scorer.at_threshold(profile, threshold).raw)
    )
    parts = (
        lost.missed_points
        + lost.timing_points
        + lost.false_positive_points
        + lost.unscorable_points
    )
    assert parts == pytest.approx(100.0 - lost.score)


# NAB's own scorer's per-file results for Numenta HTM, as NAB publishes them
# (`results/numenta/numenta_<profile>_scores.csv`, NAB commits 4b89baf for exchange-2_cpc and
# 3103b7d for exchange-3_cpm): the rows where HTM's score reaches the official threshold, the
# file's length and window (rows), and the official per-file score.
EXCHANGE_2_CPC = (1624, Window(244, 406))
EXCHANGE_3_CPM = (1538, Window(1045, 1197))


@pytest.mark.parametrize(
    ("corpus_file", "profile", "detections", "official"),
    [
        (EXCHANGE_2_CPC, STANDARD, (325, 1037, 1042, 1483), 0.531958),
        (EXCHANGE_2_CPC, LOW_FP, (1037, 1042, 1483), -1.66),  # a higher threshold: no hit
        (EXCHANGE_2_CPC, LOW_FN, (325, 1037, 1042, 1483), 0.531958),
        (EXCHANGE_3_CPM, STANDARD, (1122, 1446), 0.747515),  # 1446: 1.6 widths past
        (EXCHANGE_3_CPM, LOW_FP, (1122, 1446), 0.637576),
    ],
)
def test_matches_nab_published_per_file_scores(
    corpus_file: tuple[int, Window],
    profile: CostProfile,
    detections: tuple[int, ...],
    official: float,
) -> None:
    n_rows, window = corpus_file
    scorer = CorpusScorer()
    scorer.add_file(_scores(*detections, n_rows=n_rows), [window])
    assert scorer.at_threshold(profile, 0.5).raw == pytest.approx(official, abs=5e-7)
