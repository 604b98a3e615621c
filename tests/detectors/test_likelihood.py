"""Contract and semantics of the likelihood detector and its parts."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest
from river import stats

from detectors.golden import Direction, GoldenSignalDetector
from detectors.likelihood import (
    PARTS,
    AnomalyLikelihood,
    LikelihoodDetector,
    Persistence,
    RangeBreach,
    Refractory,
    one_sided_confidence,
)
from tests.builders import described_parameters_match, feed, fresh_values, same_floats


def _noise(seed: int, n: int, level: float = 100.0, sd: float = 5.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(level, sd) for _ in range(n)]


# --- parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "df", "expected"),
    [
        (0.0, 2, 0.5),  # the centre
        (6.965, 2, 0.99),  # the one-sided 99% quantile of t(2)
        (-6.965, 2, 0.01),  # symmetric below
        (1.0, 1, 0.75),  # Cauchy: a quarter of the mass lies above 1
    ],
)
def test_one_sided_confidence(t: float, df: int, expected: float) -> None:
    assert one_sided_confidence(t, df) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    ("direction", "value", "expected"),
    [
        ("both", 20.5, 0.0),  # inside the range widened by 5% of it (20.5 < 21)
        ("both", 21.5, 1.0),  # above the widened range
        ("both", -1.5, 1.0),  # below it
        ("up", -1.5, 0.0),  # a drop is harmless for an up-only series
        ("down", 21.5, 0.0),  # a rise is harmless for a down-only series
        ("down", -1.5, 1.0),  # the drop counts for a down-only series
        ("both", math.nan, 0.0),  # non-finite values never breach
    ],
)
def test_range_breach(direction: Direction, value: float, expected: float) -> None:
    breach = RangeBreach(tolerance=0.05, direction=direction, young=0.0)
    for x in (0.0, 20.0, 10.0):
        breach.learn_one(x)
    assert breach.score_one(value) == expected


@pytest.mark.parametrize(
    ("seen", "value", "expected"),
    [
        (10, 35.0, 0.0),  # 10 values 0..9: the margin is 30/10 = 3 ranges (27) above the max 9
        (10, 37.0, 1.0),
        (3000, 9.1, 1.0),  # a mature series: the 1% tolerance
        (3000, 9.05, 0.0),
    ],
)
def test_young_range_needs_a_clear_break_out(seen: int, value: float, expected: float) -> None:
    breach = RangeBreach(tolerance=0.01, young=30.0)
    for i in range(seen):
        breach.learn_one(float(i % 10))
    assert breach.score_one(value) == expected


def test_range_breach_scores_nothing_before_data() -> None:
    assert RangeBreach().score_one(1e9) == 0.0


def test_an_absurd_value_breaches_without_ending_later_breaches() -> None:
    breach = RangeBreach(young=0.0)
    for x in [10.0, 20.0] * 50:
        breach.learn_one(x)
    assert breach.step(1e300) == 1.0  # far beyond 1,000 ranges (10) past the max 20
    assert breach.step(81.0) == 1.0  # the max is now 80 (6 ranges up): a real record counts
    assert breach.step(81.5) == 0.0  # within 1% of the range (10 to 81) of it
    assert breach.step(-1e300) == 1.0  # the same below: the min goes 6 ranges down, to -416
    assert breach.score_one(-500.0) == 1.0


def test_a_lasting_huge_shift_is_learned_after_a_few_breaches() -> None:
    breach = RangeBreach(young=0.0)
    for x in [10.0, 20.0] * 50:
        breach.learn_one(x)
    # The max goes 20 -> 80 -> 500 -> 3,440 (each time 6 ranges up), then 1e6 is no longer
    # 1,000 ranges beyond it and is learned as it is.
    assert [breach.step(1e6) for _ in range(6)] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("first", [[5.0], [5.0, 5.0, 5.0]])
def test_a_range_of_one_value_learns_any_value_as_it_is(first: list[float]) -> None:
    breach = RangeBreach(young=0.0)
    for x in first:
        breach.learn_one(x)
    breach.learn_one(1e300)  # no range to measure it against: learned, not tamed
    assert breach.score_one(1e299) == 0.0


@pytest.mark.parametrize(
    ("period", "scores", "expected"),
    [
        (2, [0.5, 0.95, 0.99, 0.97, 0.96], [0.5, 0.95, 0.0, 0.0, 0.96]),  # mutes two points
        (0, [0.95, 0.99], [0.95, 0.99]),  # period 0: never mutes
        (1, [0.9, 0.9, 0.9, 0.9], [0.9, 0.0, 0.9, 0.0]),  # the level itself counts
        (3, [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]),  # nothing reaches the level
    ],
)
def test_refractory(period: int, scores: list[float], expected: list[float]) -> None:
    refractory = Refractory(period=period, level=0.9)
    out = []
    for score in scores:
        out.append(refractory.score_one(score))
        refractory.learn_one(score)
    assert out == expected


def test_likelihood_is_silent_during_warmup_then_scores() -> None:
    likelihood = AnomalyLikelihood(warmup=20)
    for _ in range(20):
        assert likelihood.score_one(100.0) == 0.0
        likelihood.learn_one(1.0)
    assert likelihood.ready
    assert likelihood.score_one(100.0) > 0.99


def test_likelihood_short_mean_counts_the_new_surprise() -> None:
    likelihood = AnomalyLikelihood(short_window=3)
    for surprise in (1.0, 2.0, 3.0, 4.0):
        likelihood.learn_one(surprise)
    assert likelihood.short_mean(8.0) == pytest.approx((3.0 + 4.0 + 8.0) / 3)


def test_likelihood_long_history_switches_to_weighted_means() -> None:
    likelihood = AnomalyLikelihood(short_window=1, alpha=0.01)
    for surprise in [1.0, 3.0] * 50:  # 100 = 1 / alpha short means: plain mean 2, spread 1
        likelihood.learn_one(surprise)
    assert likelihood.z_one(2.0) == pytest.approx(0.0, abs=1e-9)
    assert likelihood.z_one(4.0) == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"short_window": 0}, "short_window"),
        ({"alpha": 1.0}, "alpha"),
        ({"warmup": 0}, "warmup"),
        ({"tail_df": 0}, "tail_df"),
        ({"min_spread": 0.0}, "min_spread"),
    ],
)
def test_likelihood_rejects_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnomalyLikelihood(**kwargs)  # type: ignore[arg-type]


# --- the detector ---------------------------------------------------------------------------


def test_scores_are_in_unit_interval_on_awkward_input() -> None:
    values = [*_noise(1, 300), 0.0, -1e300, 1e300, math.nan, math.inf, -math.inf, 5.0]
    values += _noise(2, 100)
    scores = feed(LikelihoodDetector(), values)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_non_finite_values_score_zero_and_are_not_learned() -> None:
    detector = LikelihoodDetector()
    feed(detector, _noise(3, 200))
    before = pickle.dumps(detector)
    assert detector.score_one(math.nan) == 0.0
    detector.learn_one(math.inf)
    assert pickle.dumps(detector) == before


def test_scoring_does_not_learn() -> None:
    detector = LikelihoodDetector()
    feed(detector, _noise(4, 300))
    first = detector.score_one(140.0)
    detector.score_one(55.0)  # scoring another value in between changes nothing
    assert detector.score_one(140.0) == first
    assert detector.n_seen == 300


def test_pickle_round_trip_continues_identically() -> None:
    detector = LikelihoodDetector()
    feed(detector, _noise(5, 500))
    copy = pickle.loads(pickle.dumps(detector))
    rest = _noise(6, 300)
    assert feed(copy, rest) == feed(detector, rest)


def test_clone_is_a_fresh_model_with_the_same_parameters() -> None:
    detector = LikelihoodDetector(refractory=10, direction="up")
    feed(detector, _noise(7, 100))
    fresh = detector.clone()
    assert (fresh.refractory, fresh.direction, fresh.n_seen) == (10, "up", 0)


def test_memory_is_constant_and_small() -> None:
    detector = LikelihoodDetector()
    feed(detector, _noise(8, 3000))
    early = len(pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL))
    feed(detector, _noise(9, 20000))
    late = len(pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL))
    # The 4 KB aim is the compiled model's (tests/detectors/test_compiled.py). A Python int
    # pickles in as many bytes as it needs, and the novelty view's visited bits (at most 64)
    # are one: a few bytes, never more.
    assert abs(late - early) <= 8


def test_a_burst_alarms_once_then_is_muted_yet_continues() -> None:
    burst = [160.0 - step for step in range(10)]  # its first point is its peak
    values = _noise(10, 1000) + burst + _noise(12, 100)
    detector = LikelihoodDetector()
    scores, going_on = [], []
    for x in values:
        scores.append(detector.score_one(x))
        going_on.append(detector.continues(x))
        detector.learn_one(x)
    assert scores[1000] > 0.99
    assert max(scores[1001:1031]) == 0.0  # the refractory period
    assert all(going_on[1001:1010])  # the burst is still going on: the stage keeps emitting
    assert not any(going_on[1010:])  # and it is over with the burst
    assert sum(s >= 0.99 for s in scores[130:1000]) <= 8  # noise: a few new records at most


def test_an_escalating_event_alarms_again_while_muted() -> None:
    values = [*_noise(10, 1000), 160.0, 150.0, 200.0, 150.0]
    scores = feed(LikelihoodDetector(), values)
    assert scores[1000] == 1.0
    assert scores[1001] == 0.0  # muted
    assert scores[1002] == 1.0  # a new record: the event got worse
    assert scores[1003] == 0.0  # and the quiet period started again


def test_a_benign_record_does_not_hide_a_real_spike() -> None:
    values = _noise(10, 1000)
    record = max(values)
    scores = feed(LikelihoodDetector(), [*values, record + 1.5, 100.0, 100.0, record + 100.0])
    assert scores[1000] == 1.0  # a small new record alarms and mutes
    assert scores[1003] == 1.0  # the spike two points later is not muted


def _two_bursts_and_a_record(quiet: int) -> list[float]:
    """Scores of a series whose range is wide (an early spike), with a burst inside the range
    (the point likelihood alarms), a new record 49 points later (a breach) and a second burst
    30 points after that, then a larger burst long after."""
    rng = random.Random(11)
    values = [100.0 + rng.gauss(0.0, 1.0) for _ in range(700)]
    values[50] = 200.0
    values[400:403] = [150.0] * 3
    values[450] = 260.0
    values[480:483] = [150.0] * 3
    values[620:624] = [180.0] * 4
    detector = LikelihoodDetector(seasonal_bins=None, weekly_bins=None, quiet=quiet)
    return feed(detector, values)


@pytest.mark.parametrize(
    ("quiet", "alarms"),
    [
        (100, [401, 450, 623]),  # the second burst falls in the quiet period the record began
        (0, [401, 450, 482, 623]),  # without it, every part's own mute is all there is
    ],
)
def test_after_an_alarm_the_whole_model_keeps_quiet_but_for_breaches(
    quiet: int, alarms: list[int]
) -> None:
    scores = _two_bursts_and_a_record(quiet)
    assert [i for i, s in enumerate(scores) if s >= 0.99 and i > 300] == alarms
    assert scores[450] == 1.0  # a breach is never muted, and starts the quiet period again


def test_scores_are_the_likelihood_scale_raised_to_put_the_alarm_level_at_0_99() -> None:
    values = _noise(21, 3000) + [130.0] * 5 + _noise(22, 500)
    shipped, raw = LikelihoodDetector(), LikelihoodDetector(alarm_level=None)
    level = one_sided_confidence(6.0, 2)  # the refractory level
    power = math.log(0.99) / math.log(level)
    assert level**power == pytest.approx(0.99, abs=1e-12)
    live = 0
    for x in values:
        was_live = raw.live  # the score of a point is on the scale the model had before it
        score, raw_score = shipped.step(x)[0], raw.step(x)[0]
        if was_live:
            live += 1
            assert score == raw_score**power
            assert (score >= 0.99) == (raw_score >= level) or abs(raw_score - level) < 1e-12
        else:
            assert score == raw_score  # the young series' golden scores keep their scale
    assert live > 2000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alarm_level": 0.0}, "alarm_level"),
        ({"alarm_level": 1.0}, "alarm_level"),
        ({"alarm_level": -0.5}, "alarm_level"),
        ({"alarm_level": 1.5}, "alarm_level"),
        ({"quiet": -1}, "quiet"),
        ({"novelty_quiet": -1}, "novelty_quiet must be >= 0"),
        ({"novelty_bins": 7}, "novelty bins must be an even number"),
        ({"novelty_bins": 128}, "novelty bins must be an even number"),
        ({"novelty_after": -5}, "novelty after must be >= 0"),
    ],
)
def test_quiet_alarm_level_and_novelty_are_validated(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LikelihoodDetector(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("direction", "shift", "alarms"),
    [
        ("both", +60.0, True),  # a surge alarms when both ways count
        ("both", -60.0, True),  # and so does a drop
        ("up", -60.0, False),  # a drop is good news for latency-like series
        ("down", +60.0, False),  # a surge is harmless for a down-only series
    ],
)
def test_direction(direction: Direction, shift: float, alarms: bool) -> None:
    values = _noise(13, 1000) + [v + shift for v in _noise(14, 10)]
    scores = feed(LikelihoodDetector(direction=direction), values)
    assert (max(scores[1000:]) > 0.99) is alarms


def test_a_young_series_scores_with_the_golden_model_until_the_likelihood_is_live() -> None:
    detector = LikelihoodDetector(warmup=20, likelihood_warmup=100)
    golden = GoldenSignalDetector(direction="both", warmup=20, alpha=0.01)
    for x in _noise(3, 60):
        assert detector.score_one(x) == golden.score_one(x)
        detector.learn_one(x)
        golden.learn_one(x)
    assert not detector.live
    assert detector.score_one(200.0) > 0.99  # a young series still alarms on a wild point
    quiet = LikelihoodDetector(warmup=20, early_scores=False)
    feed(quiet, _noise(3, 60))
    assert quiet.score_one(200.0) == 0.0


def test_ceiling_pressure_is_never_muted() -> None:
    detector = LikelihoodDetector(direction="up", ceiling=1.0)
    feed(detector, _noise(4, 1000, level=0.5, sd=0.02))
    scores = feed(detector, [0.99] * 40)
    assert scores[0] == 1.0  # a new record
    assert min(scores) > 0.99  # pinned at the ceiling: alarms on every point


def test_continues_only_while_muted() -> None:
    detector = LikelihoodDetector()
    feed(detector, _noise(6, 1000))
    assert not detector.continues(160.0)  # not muted: a fresh alarm is a score, not a carry-on
    detector.learn_one(160.0)
    assert detector.continues(160.0)
    assert not detector.continues(100.0)


def test_hold_sigmas_must_fit_under_the_cap() -> None:
    with pytest.raises(ValueError, match="hold_sigmas"):
        LikelihoodDetector(hold_sigmas=7.0)


# --- one call per point ----------------------------------------------------------------------


def _awkward_stream(seed: int, n: int = 6000) -> list[float]:
    """Noise with spikes, a sustained burst, a level shift, a smooth walk with a step and a
    few non-finite values."""
    rng = random.Random(seed)
    values = []
    walk = 80.0
    for i in range(n):
        x = rng.gauss(50.0, 5.0)
        if rng.random() < 0.01:
            x += rng.choice([1.0, -1.0]) * rng.expovariate(0.02)
        if 2000 <= i < 2040:
            x += 100.0
        if i >= 4000:
            x += 30.0
        if 4500 <= i < 5500:  # a smooth walk, where the persistence forecast takes over
            walk += rng.gauss(0.0, 0.3) + (10.0 if i == 5000 else 0.0)
            x = walk
        if rng.random() < 0.002:
            x = rng.choice([math.nan, math.inf, -math.inf])
        values.append(x)
    return values


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"direction": "up", "ceiling": 100.0},
        {"direction": "down", "range_tolerance": None},
        {"refractory": 0, "early_scores": False},
        {"warmup": 5, "likelihood_warmup": 10, "tail_df": 3},
        {"quiet": 7, "refractory": 50},
        {"quiet": 0, "alarm_level": None},
        {"persistence_ratio": None},
        {"persistence_ratio": 1.0, "direction": "up"},
        {"novelty_bins": 64, "novelty_after": 50, "direction": "up"},  # the novelty view fires
        {"novelty_bins": 32, "novelty_after": 100, "direction": "down"},
        {"novelty_bins": 64, "novelty_after": 20},
    ],
)
def test_step_is_score_continues_then_learn(kwargs: dict[str, object]) -> None:
    stepped = LikelihoodDetector(**kwargs)  # type: ignore[arg-type]
    called = LikelihoodDetector(**kwargs)  # type: ignore[arg-type]
    alarms = 0
    for x in _awkward_stream(seed=len(kwargs)):
        expected = (called.score_one(x), called.continues(x))
        called.learn_one(x)
        assert stepped.step(x) == expected
        alarms += expected[0] >= 0.99
    assert alarms > 0  # the stream exercised the alarm and refractory paths


def test_parts_step_is_score_then_learn() -> None:
    likelihood_stepped = AnomalyLikelihood(warmup=20)
    likelihood_called = AnomalyLikelihood(warmup=20)
    breach_stepped, breach_called = RangeBreach(), RangeBreach()
    for x in _awkward_stream(seed=11, n=3000):
        surprise = abs(x - 50.0) / 5.0 if math.isfinite(x) else x
        expected = likelihood_called.score_one(surprise)
        likelihood_called.learn_one(surprise)
        assert likelihood_stepped.step(surprise) == expected
        expected = breach_called.score_one(x)
        breach_called.learn_one(x)
        assert breach_stepped.step(x) == expected


def test_long_history_is_plain_then_exponentially_weighted() -> None:
    likelihood = AnomalyLikelihood(short_window=1, alpha=0.01, warmup=1)
    plain = stats.Var(ddof=0)
    rng = random.Random(5)
    for _ in range(100):  # 1 / alpha short means: River's plain mean and population variance
        surprise = rng.expovariate(1.0)
        likelihood.learn_one(surprise)
        plain.update(surprise)
        assert likelihood.long_mean == pytest.approx(plain.mean.get(), rel=1e-12)
        spread = max(math.sqrt(plain.get()), likelihood.min_spread)
        assert likelihood.long_spread == pytest.approx(spread, rel=1e-9)
    # Then weighted by alpha: after k short means at a new level, the mean has moved by a
    # fraction 1 - (1 - alpha) ** k of the step.
    start = likelihood.long_mean
    for k in range(1, 301):
        likelihood.learn_one(start + 10.0)
        moved = 10.0 * (1.0 - (1.0 - 0.01) ** k)
        assert likelihood.long_mean == pytest.approx(start + moved, rel=1e-9)
    assert likelihood.long_spread > 1.0  # the step itself widened the spread


# --- the persistence forecast -----------------------------------------------------------


def _walk(seed: int, n: int, step: float = 0.2) -> list[float]:
    rng = random.Random(seed)
    level, values = 100.0, []
    for _ in range(n):
        level += rng.gauss(0.0, step)
        values.append(level)
    return values


@pytest.mark.parametrize("seed", range(5))
def test_persistence_sees_a_step_the_baseline_spread_hides(seed: int) -> None:
    # A slow walk: the baseline lags it, so its spread is wide and a 10-step jump is ordinary
    # for it; for the last value's forecast it is 10 of its spreads.
    with_it, without = LikelihoodDetector(), LikelihoodDetector(persistence_ratio=None)
    walk = _walk(seed, 1500)
    for x in walk:
        with_it.step(x)
        without.step(x)
    jump = [walk[-1] + 2.0 + 0.2 * k for k in range(5)]
    seen = max(with_it.step(x)[0] for x in jump)
    hidden = max(without.step(x)[0] for x in jump)
    assert seen > 0.97
    assert seen > hidden


@pytest.mark.parametrize(
    ("values", "baseline", "smooth"),
    [
        (_walk(1, 2000), 100.0, True),  # the last value is the best forecast
        (_noise(2, 2000), 100.0, False),  # white noise: the baseline is
        ([5.0] * 2000, 5.0, False),  # constant: neither has any error to compare
    ],
)
def test_persistence_stands_in_only_for_smooth_series(
    values: list[float], baseline: float, smooth: bool
) -> None:
    persistence = Persistence(ratio=0.2)
    for x in values:
        persistence.learn_one(x, baseline)
    assert persistence.smooth is smooth
    assert 0.0 <= persistence.phi <= 1.0


@pytest.mark.parametrize(
    ("direction", "offset", "surprise"),
    [
        ("both", 5.0, 36.0),
        ("both", -5.0, 36.0),
        ("up", 5.0, 36.0),
        ("up", -5.0, 0.0),
        ("down", -5.0, 36.0),
        ("down", 5.0, 0.0),
    ],
)
def test_persistence_surprise_follows_the_direction(
    direction: Direction, offset: float, surprise: float
) -> None:
    persistence = Persistence()
    walk = _walk(3, 2000, step=0.1)
    for x in walk:
        persistence.learn_one(x, 100.0)
    assert persistence.surprise(walk[-1] + offset, 100.0, 1.5, direction, 6.0) == surprise


def test_an_absurd_value_does_not_poison_persistence() -> None:
    persistence = Persistence()
    walk = _walk(4, 1000)
    for x in walk[:500]:
        persistence.learn_one(x, 100.0)
    power = persistence._power
    persistence.learn_one(1e300, 100.0)
    for x in walk[500:]:
        persistence.learn_one(x, 100.0)
    assert persistence.smooth
    assert persistence._power < 10 * power
    assert math.isfinite(persistence.phi)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"ratio": 0.0}, "ratio"), ({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha")],
)
def test_persistence_rejects_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Persistence(**kwargs)


@pytest.mark.parametrize("seed", range(3))
def test_a_step_on_a_smooth_series_continues_by_the_baseline(seed: int) -> None:
    # The persistence forecast catches up with a step at once; the event goes on while the
    # value stays off the baseline, as on any other series.
    rng = random.Random(seed)
    detector = LikelihoodDetector()
    level = 100.0
    for _ in range(1500):
        level += rng.gauss(0.0, 0.2)
        detector.step(level)
    persistence = detector._persistence
    assert persistence is not None
    assert persistence.smooth
    level += 10.0
    steps = []
    for _ in range(6):
        level += rng.gauss(0.0, 0.2)
        steps.append(detector.step(level))
    assert steps[0][0] >= 0.99
    assert all(going_on for _, going_on in steps[1:])


# --- which part gave the score ---------------------------------------------------------------

_MIDNIGHT = 1_600_041_600.0  # a midnight, UTC


def _days_with_an_excursion(seed: int = 5, days: int = 10) -> list[tuple[float, float]]:
    """Five-minute points at 50 by night and 80 by day, noise 3, and ten points at 96 (a
    night-time record near a ceiling of 102) from point 2,000."""
    rng = random.Random(seed)
    points = []
    for i in range(days * 288):
        t = _MIDNIGHT + 300.0 * i
        day = 8 <= (t % 86400) / 3600 < 20
        x = 96.0 if 2000 <= i < 2010 else rng.gauss(80.0 if day else 50.0, 3.0)
        points.append((x, t))
    return points


@pytest.mark.parametrize(
    ("part", "settings", "without"),
    [
        ("breach", {"novelty_bins": None}, {"range_tolerance": None}),
        ("novelty", {"novelty_after": 50}, {"novelty_bins": None}),
        # The views' gates lowered, so that each view wins some point on this stream.
        ("drift", {"drift_sigmas": 2.0}, {"drift_window": None}),
        ("daily", {"seasonal_sigmas": 2.0}, {"seasonal_bins": None}),
        ("weekly", {"weekly_sigmas": 2.0}, {"weekly_bins": None}),
        ("ceiling", {"ceiling": 102.0}, {"ceiling": None}),
    ],
)
def test_last_part_names_the_part_whose_opinion_is_the_score(
    part: str, settings: dict[str, object], without: dict[str, object]
) -> None:
    """Until a part first gives the score, the model without it scores the same; at that
    point, without it, the score is lower."""
    model = LikelihoodDetector(**settings)  # type: ignore[arg-type]
    lacking = LikelihoodDetector(**{**settings, **without})  # type: ignore[arg-type]
    for i, (x, t) in enumerate(_days_with_an_excursion()):
        score, _ = model.step(x, t)
        other, _ = lacking.step(x, t)
        if model.last_part == part:
            assert other < score, i
            return
        assert other == score, i
    pytest.fail(f"no score came from {part}")


def test_last_part_is_the_point_model_or_nothing_otherwise() -> None:
    model = LikelihoodDetector(range_tolerance=None, novelty_bins=None, drift_window=None)
    seen = set()
    for x in [*_noise(8, 600), math.nan, math.inf]:
        score, _ = model.step(x)  # no time: no seasonal view
        assert model.last_part == ("point" if score > 0 else "")
        seen.add(model.last_part)
    assert seen == {"point", ""}
    assert set(PARTS) == {"point", "breach", "drift", "daily", "weekly", "novelty", "ceiling"}


# --- descriptions (the compiled model's layout is generated from them) -----------------------

PERSISTENCE_STATE = ("_previous", "_n", "_sxy", "_sxx", "_base_power", "_power", "_above", "_below")


@pytest.mark.parametrize(
    ("part", "fresh"),
    [
        # the range: no values yet, so an empty one (low above high)
        (RangeBreach(), lambda r: [r._low, r._high, r._n_seen]),
        (RangeBreach(tolerance=0.5, young=0.0), lambda r: [r._low, r._high, r._n_seen]),
        # a refractory period's clock
        (Refractory(period=7, level=0.9), lambda r: [r._quiet]),
        # a likelihood's ring fill, next slot, sum and count, its long-term statistics (the
        # spread at its floor), then its ring of `short_window - 1` surprises
        (
            AnomalyLikelihood(short_window=4, min_spread=0.5, two_sided=True),
            lambda a: (
                [len(a._recent), a._next, a._sum, a._n_seen, a._mean, a._power, a._spread]
                + [0.0] * (a.short_window - 1)
            ),
        ),
        # a one-point window keeps no ring at all
        (
            AnomalyLikelihood(short_window=1),
            lambda a: [len(a._recent), a._next, a._sum, a._n_seen, a._mean, a._power, a._spread],
        ),
        # the persistence forecast: no last value (NaN), no statistics
        (
            Persistence(ratio=0.5, alpha=0.1),
            lambda p: [getattr(p, name) for name in PERSISTENCE_STATE],
        ),
    ],
)
def test_parts_describe_their_fresh_state_and_settings(
    part: RangeBreach | Refractory | Persistence | AnomalyLikelihood,
    fresh: Callable[[Any], list[float]],
) -> None:
    assert same_floats(fresh_values(part.state_fields()), [float(x) for x in fresh(part)])
    assert described_parameters_match(part)


@pytest.mark.parametrize(
    "settings",
    [
        # every part there
        {},
        # parts left out: the model still names its own parameters
        {"range_tolerance": None, "persistence_ratio": None, "novelty_bins": None},
        # no alarm-level power
        {"alarm_level": None, "early_scores": False},
    ],
)
def test_the_model_describes_its_own_parameters_and_parts(settings: dict[str, Any]) -> None:
    model = LikelihoodDetector(**settings)
    parts = model.parts()
    assert (parts.breach is None) == ("range_tolerance" in settings)
    assert (parts.persistence is None) == ("persistence_ratio" in settings)
    assert parts.golden.n_seen == parts.likelihood.n_seen == 0
    described = {field.name: field.value for field in model.parameter_fields()}
    assert described["surprise_cap"] == model.surprise_cap
    assert described["hold_sigmas"] == model.hold_sigmas
    assert described["early_scores"] == float(model.early_scores)
    # the power takes the refractory level to the alarm level (1: the likelihood's scale)
    alarm_level = model.alarm_level or parts.refractory.level
    assert math.isclose(parts.refractory.level ** described["power"], alarm_level)
