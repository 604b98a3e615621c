"""Contract and semantics of the golden-signal detectors."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

from detectors.golden import (
    Direction,
    GoldenSignalDetector,
    golden_for_signal,
    series_nbytes,
)
from tests.builders import SIGNAL_MODELS, described_parameters_match, feed, fresh_values

SIGNALS = ["latency", "errors", "traffic", "saturation", "generic"]
THRESHOLD = 0.99  # the shipped default threshold for every signal


def noisy(rng: random.Random, level: float, sd: float, n: int) -> list[float]:
    return [level + rng.gauss(0.0, sd) for _ in range(n)]


# --- contract: every signal's detector -------------------------------------------------------


def awkward_stream(rng: random.Random) -> list[float]:
    """Ordinary noise, then zeros, negatives, huge and non-finite values."""
    values = noisy(rng, 0.5, 0.05, 200)
    values += [0.0] * 20 + [-3.0, 1e300, -1e300, 1e-300, 5.0, math.nan, math.inf, -math.inf]
    values += noisy(rng, 0.5, 0.05, 50)
    return values


@pytest.mark.parametrize("signal", SIGNALS)
def test_scores_zero_during_warmup(signal: str) -> None:
    detector = golden_for_signal(signal, warmup=12)
    rng = random.Random(1)
    for i, value in enumerate(noisy(rng, 0.5, 0.05, 12)):
        assert detector.n_seen == i
        assert detector.score_one(value) == 0.0
        assert detector.score_one(1e9) == 0.0  # even a wild value is not scored yet
        detector.learn_one(value)
    assert detector.score_one(1e9) > THRESHOLD


@pytest.mark.parametrize("signal", SIGNALS)
def test_scores_are_finite_and_in_unit_interval(signal: str) -> None:
    detector = golden_for_signal(signal)
    scores = feed(detector, awkward_stream(random.Random(2)))
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert math.isfinite(detector.expected)
    assert math.isfinite(detector.spread_above)
    assert math.isfinite(detector.spread_below)


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("learned", [5, 300])  # mid warm-up, and steady state
def test_pickle_round_trip_scores_identically(signal: str, learned: int) -> None:
    rng = random.Random(3)
    detector = golden_for_signal(signal)
    feed(detector, noisy(rng, 0.6, 0.02, learned))
    restored = pickle.loads(pickle.dumps(detector))
    later = awkward_stream(rng)
    assert feed(restored, later) == feed(detector, later)
    assert restored.n_seen == detector.n_seen
    assert restored.expected == detector.expected


@pytest.mark.parametrize("signal", SIGNALS)
def test_clone_is_fresh_with_same_params(signal: str) -> None:
    detector = golden_for_signal(signal, warmup=7)
    feed(detector, [1.0, 2.0, 3.0])
    clone = detector.clone()
    assert clone.n_seen == 0
    assert clone._get_params() == detector._get_params()


@pytest.mark.parametrize("signal", SIGNALS)
def test_bytes_per_series_stay_small(signal: str) -> None:
    detector = golden_for_signal(signal)
    sizes = [series_nbytes(detector)]
    for value in awkward_stream(random.Random(4)):
        detector.learn_one(value)
        sizes.append(series_nbytes(detector))
    assert max(sizes) < 4096
    assert series_nbytes(detector) == len(pickle.dumps(detector, pickle.HIGHEST_PROTOCOL))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_score_zero_and_are_not_learned(value: float) -> None:
    detector = golden_for_signal("generic", warmup=3)
    feed(detector, [10.0, 11.0, 10.5, 10.2])
    before = (detector.n_seen, detector.expected, detector.spread_above, detector.spread_below)
    assert detector.score_one(value) == 0.0
    detector.learn_one(value)
    assert (
        detector.n_seen,
        detector.expected,
        detector.spread_above,
        detector.spread_below,
    ) == before


# --- semantics: what each golden signal alarms on ---------------------------------------------

Series = Callable[[random.Random], list[float]]


def steady(level: float, sd: float, n: int = 400) -> Series:
    return lambda rng: noisy(rng, level, sd, n)


def creeping(start: float, stop: float, sd: float, n: int = 400) -> Series:
    return lambda rng: [start + (stop - start) * i / n + rng.gauss(0.0, sd) for i in range(n)]


@pytest.mark.parametrize(
    ("signal", "history", "probe", "alarms"),
    [
        # latency spike of 10 spreads pages
        ("latency", steady(0.200, 0.010), 0.300, True),
        # latency falling by 10 spreads is good news: no page
        ("latency", steady(0.200, 0.010), 0.100, False),
        # latency within noise: no page
        ("latency", steady(0.200, 0.010), 0.215, False),
        # traffic dropping to near zero pages
        ("traffic", steady(1000.0, 30.0), 2.0, True),
        # traffic surge pages too
        ("traffic", steady(1000.0, 30.0), 1300.0, True),
        # traffic within noise: no page
        ("traffic", steady(1000.0, 30.0), 1040.0, False),
        # error rate rising pages
        ("errors", steady(0.5, 0.1), 1.5, True),
        # error rate falling to zero: no page
        ("errors", steady(0.5, 0.1), 0.0, False),
        # utilisation crept up slowly to 0.96; 0.97 of the ceiling pages anyway
        ("saturation", creeping(0.50, 0.96, 0.003), 0.97, True),
        # utilisation far below the ceiling but jumping up pages
        ("saturation", steady(0.30, 0.01), 0.45, True),
        # utilisation dropping: no page
        ("saturation", steady(0.30, 0.01), 0.10, False),
        # utilisation steady at 0.6: no page
        ("saturation", steady(0.60, 0.01), 0.61, False),
        # generic series alarm both ways
        ("generic", steady(-40.0, 1.0), -50.0, True),
        ("generic", steady(-40.0, 1.0), -30.0, True),
    ],
)
def test_signal_semantics(signal: str, history: Series, probe: float, alarms: bool) -> None:
    detector = golden_for_signal(signal)
    feed(detector, history(random.Random(5)))
    score = detector.score_one(probe)
    if alarms:
        assert score > THRESHOLD
    else:
        assert score < 0.9


@pytest.mark.parametrize("signal", ["latency", "errors", "saturation"])
def test_upward_only_signals_score_zero_on_drops(signal: str) -> None:
    detector = golden_for_signal(signal)
    feed(detector, steady(0.5, 0.01)(random.Random(6)))
    assert detector.score_one(0.4) == 0.0


def test_saturation_ceiling_follows_its_unit() -> None:
    # Percent utilisation: the same shape against a ceiling of 100.
    detector = golden_for_signal("saturation", ceiling=100.0)
    feed(detector, creeping(50.0, 96.0, 0.3)(random.Random(7)))
    assert detector.score_one(97.0) > THRESHOLD
    assert detector.score_one(85.0) < THRESHOLD


@pytest.mark.parametrize(
    ("level", "probe", "alarms"),
    [
        # constant series, a rounding-sized change: the spread floor keeps z small
        (100.0, 100.3, False),
        # constant series that jumps by 10%
        (100.0, 110.0, True),
        # constant zero series that becomes positive
        (0.0, 1.0, True),
    ],
)
def test_constant_series(level: float, probe: float, alarms: bool) -> None:
    detector = golden_for_signal("generic")
    feed(detector, [level] * 100)
    assert (detector.score_one(probe) > THRESHOLD) is alarms


@pytest.mark.parametrize("direction", ["both", "up"])
def test_gaussian_noise_false_alarm_rate_is_well_under_one_percent(direction: Direction) -> None:
    rng = random.Random(8)
    detector = GoldenSignalDetector(direction=direction)
    scores = feed(detector, noisy(rng, 100.0, 5.0, 5000))[detector.warmup :]
    rate = sum(s > THRESHOLD for s in scores) / len(scores)
    assert rate < 0.005


@pytest.mark.parametrize("seed", range(5))
def test_six_sigma_step_scores_above_three_nines(seed: int) -> None:
    detector = golden_for_signal("traffic")
    feed(detector, noisy(random.Random(seed), 100.0, 5.0, 500))
    assert detector.score_one(130.0) > 0.999
    assert detector.score_one(70.0) > 0.999


@pytest.mark.parametrize(
    ("signal", "before", "after", "sd", "within"),
    [
        # latency steps up by 10 spreads and stays: learned within 40 points
        ("latency", 0.2, 0.3, 0.01, 40),
        # traffic collapses from 1000 to 10 (about 100 spreads) and stays: within 80
        ("traffic", 1000.0, 10.0, 10.0, 80),
        # a shift of 10,000 spreads still resolves, only later
        ("generic", 0.0, 1e4, 1.0, 150),
    ],
)
def test_level_shift_alarms_then_is_learned(
    signal: str, before: float, after: float, sd: float, within: int
) -> None:
    rng = random.Random(9)
    detector = golden_for_signal(signal)
    feed(detector, noisy(rng, before, sd, 300))
    scores = feed(detector, noisy(rng, after, sd, within + 200))
    assert scores[0] > 0.999
    assert max(scores[within:]) < THRESHOLD


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw by Knuth's product of uniforms (fine for small means)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product >= limit:
        count += 1
        product *= rng.random()
    return count


@pytest.mark.parametrize(
    ("signal", "series"),
    [
        # a sparse error count: mostly 0, sometimes 1 (Poisson, mean 0.1)
        ("errors", lambda rng: float(poisson(rng, 0.1))),
        # a busier error count (Poisson, mean 2)
        ("errors", lambda rng: float(poisson(rng, 2.0))),
        # latency with a long upper tail (log-normal, sigma 0.3)
        ("latency", lambda rng: 0.2 * math.exp(rng.gauss(0.0, 0.3))),
    ],
)
def test_skewed_series_rarely_page(signal: str, series: Callable[[random.Random], float]) -> None:
    rng = random.Random(11)
    detector = golden_for_signal(signal)
    scores = feed(detector, [series(rng) for _ in range(5000)])
    assert sum(s > THRESHOLD for s in scores) / len(scores) < 0.01


def test_one_wild_point_does_not_blind_the_detector() -> None:
    rng = random.Random(10)
    detector = golden_for_signal("latency")
    feed(detector, noisy(rng, 0.2, 0.01, 300))
    feed(detector, [5.0])  # a 480-spread outlier, learned clipped
    feed(detector, noisy(rng, 0.2, 0.01, 5))
    assert abs(detector.expected - 0.2) < 0.01
    assert detector.score_one(0.27) > THRESHOLD


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"direction": "sideways"},  # not a direction
        {"warmup": 0},  # nothing to learn from
        {"alpha": 0.0},  # a baseline that never moves
        {"spread_alpha": 1.0},  # a spread of one residual
        {"ceiling": -1.0},  # a ceiling must be positive
        {"ceiling": math.inf},  # and finite
        {"tail_df": 0},  # no such t distribution
        {"clip_sigmas": 1.0},  # the spread could never grow
        {"min_spread": 0.0},  # a constant series would divide by zero
        {"ceiling_start": 1.0},  # pressure would start at the ceiling
    ],
)
def test_rejects_bad_parameters(kwargs: dict[str, object]) -> None:
    (name,) = kwargs
    with pytest.raises(ValueError, match=name):
        GoldenSignalDetector(**kwargs)  # type: ignore[arg-type]


def test_unknown_signal_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown signal 'throughput'"):
        golden_for_signal("throughput")


@pytest.mark.parametrize(("signal", "direction", "ceiling"), SIGNAL_MODELS)
def test_factory_directions(signal: str, direction: str, ceiling: float | None) -> None:
    detector = golden_for_signal(signal, ceiling=2.0, warmup=9)
    assert (detector.direction, detector.ceiling, detector.warmup) == (direction, ceiling, 9)


def test_weighted_means_follow_river_ewmean() -> None:
    # After the warm-up the baseline and the two powers are River's EWMean recurrence,
    # written out; seeded from the warm-up's plain means as an EWMean takes its first value.
    from river import stats

    rng = random.Random(8)
    detector = GoldenSignalDetector(warmup=30, alpha=0.05, spread_alpha=0.01)
    values = noisy(rng, 100.0, 5.0, 2000)
    values[500:520] = [160.0] * 20  # clipped residuals
    for x in values[:30]:
        detector.learn_one(x)
    level, above, below = stats.EWMean(0.05), stats.EWMean(0.01), stats.EWMean(0.01)
    level.update(detector.expected)
    above.update(detector.spread_above**2)
    below.update(detector.spread_below**2)
    for x in values[30:]:
        residual = x - detector.expected
        clipped = max(-4.0 * detector.spread_below, min(residual, 4.0 * detector.spread_above))
        if residual >= 0:
            above.update(clipped * clipped)
        if residual <= 0:
            below.update(clipped * clipped)
        level.update(detector.expected + clipped)
        detector.learn_one(x)
        assert detector.expected == level.get()
        assert detector.spread_above == math.sqrt(above.get())
        assert detector.spread_below == math.sqrt(below.get())


def test_step_is_score_then_learn() -> None:
    rng = random.Random(9)
    stepped, called = GoldenSignalDetector(ceiling=200.0), GoldenSignalDetector(ceiling=200.0)
    values = [*noisy(rng, 100.0, 5.0, 1000), math.nan, 190.0, math.inf, *noisy(rng, 150.0, 5.0, 50)]
    for x in values:
        expected = called.score_one(x)
        called.learn_one(x)
        assert stepped.step(x) == (expected, False)
    assert stepped.expected == called.expected


@pytest.mark.parametrize(
    ("settings", "codes"),
    [
        # the defaults: both directions, no ceiling
        ({}, {"direction": 0.0, "has_ceiling": 0.0, "ceiling": 0.0}),
        # upward with a ceiling
        (
            {"direction": "up", "ceiling": 2.0},
            {"direction": 1.0, "has_ceiling": 1.0, "ceiling": 2.0},
        ),
        # downward, a floor on the spreads that the fresh state starts at
        ({"direction": "down", "min_spread": 0.25}, {"direction": 2.0, "has_ceiling": 0.0}),
    ],
)
def test_the_golden_model_describes_its_settings_and_fresh_state(
    settings: dict[str, Any], codes: dict[str, float]
) -> None:
    detector = GoldenSignalDetector(**settings)
    described = {field.name: field.value for field in detector.parameter_fields()}
    assert codes.items() <= described.items()
    assert described_parameters_match(detector)
    warm = detector._warm
    assert warm is not None
    means = [warm.level, warm.above, warm.below]
    spec = [detector._n_seen, detector._expected, detector._above, detector._below]
    spec += [detector._power_above, detector._power_below]
    spec += [number for mean in means for number in (mean.n, mean._mean)]
    assert fresh_values(detector.state_fields()) == [float(x) for x in spec]
