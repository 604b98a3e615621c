"""The likelihood detector's second opinions: gate, drift, daily profile, seasonal likelihood."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

from detectors.golden import Direction
from detectors.likelihood import LikelihoodDetector
from detectors.scoring import one_sided_confidence
from detectors.views import DriftLikelihood, Gate, Novelty, SeasonalLikelihood, SeasonalProfile
from tests.builders import described_parameters_match, fresh_values

DAY = 86400.0
STEP = 300.0  # five-minute points, as in NAB


@pytest.mark.parametrize(
    ("quiet", "scores", "expected"),
    [
        # below the level nothing passes, and nothing starts the quiet period
        (3, [0.5, 0.9, 0.98], [0.0, 0.0, 0.0]),
        # a pass, then `quiet` scores muted, then the next pass
        (2, [0.99, 0.999, 0.999, 0.995], [0.99, 0.0, 0.0, 0.995]),
        # no quiet period: every score at the level passes
        (0, [0.99, 0.99, 0.5], [0.99, 0.99, 0.0]),
    ],
)
def test_gate(quiet: int, scores: list[float], expected: list[float]) -> None:
    gate = Gate(sigmas=6.0, quiet=quiet)  # level one_sided_confidence(6, 2) = 0.98675
    out = []
    for score in scores:
        predicted = gate.score_one(score)  # what step will return, changing nothing
        assert gate.score_one(score) == predicted
        out.append(gate.step(score))
        assert out[-1] == predicted
    assert out == expected
    assert gate.level == one_sided_confidence(6.0, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigmas": 0.0}, "sigmas"),
        ({"quiet": -1}, "quiet"),
    ],
)
def test_gate_rejects_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Gate(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("direction", "shift", "alarms"),
    [
        ("both", 2.0, True),
        ("both", -2.0, True),
        ("up", 2.0, True),
        ("up", -2.0, False),
        ("down", -2.0, True),
        ("down", 2.0, False),
    ],
)
def test_drift_sees_a_held_shift_in_its_direction(
    direction: Direction, shift: float, alarms: bool
) -> None:
    rng = random.Random(4)
    drift = DriftLikelihood(window=30, direction=direction)
    calm = [drift.step(rng.gauss(0.0, 1.0)) for _ in range(3000)]
    held = [drift.step(rng.gauss(shift, 1.0)) for _ in range(30)]
    assert max(calm[200:]) < 0.97
    assert (max(held) > 0.99) is alarms


def test_drift_is_not_fooled_by_one_spike() -> None:
    # Clipped at `cap`, one huge residual moves a 30-point mean by at most cap / 30.
    rng = random.Random(6)
    drift = DriftLikelihood(window=30, cap=3.0)
    for _ in range(3000):
        drift.step(rng.gauss(0.0, 1.0))
    assert drift.score_one(1e6) < 0.99


def test_drift_step_is_score_then_learn() -> None:
    rng = random.Random(8)
    stepped, called = DriftLikelihood(), DriftLikelihood()
    for i in range(2000):
        z = rng.gauss(1.5 if 1500 <= i < 1540 else 0.0, 1.0)
        expected = called.score_one(z)
        called.learn_one(z)
        assert stepped.step(z) == expected


def _daily(t: float, rng: random.Random) -> float:
    return 50.0 + 40.0 * math.sin(2 * math.pi * t / DAY) + rng.gauss(0.0, 2.0)


def test_profile_learns_the_daily_shape() -> None:
    rng = random.Random(1)
    profile = SeasonalProfile(bins=48)
    for step in range(int(4 * DAY / STEP)):
        profile.learn_one(step * STEP, _daily(step * STEP, rng))
    for hour in (0, 6, 12, 18):
        truth = 50.0 + 40.0 * math.sin(2 * math.pi * hour / 24)
        predicted = profile.predict_one(hour * 3600.0)
        assert predicted is not None
        assert predicted == pytest.approx(truth, abs=3.0)


def test_profile_is_silent_before_data_and_ignores_non_finite_input() -> None:
    profile = SeasonalProfile(bins=4)
    assert profile.predict_one(0.0) is None
    profile.learn_one(math.nan, 1.0)
    profile.learn_one(0.0, math.inf)
    assert profile.predict_one(0.0) is None
    profile.learn_one(DAY / 8, 10.0)  # the middle of bin 0
    assert profile.predict_one(DAY / 8) == 10.0
    assert profile.predict_one(math.nan) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"period": 0.0}, "period"), ({"bins": 1}, "bins"), ({"alpha": 0.0}, "alpha")],
)
def test_profile_rejects_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SeasonalProfile(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("direction", "level", "alarms"),
    [
        # the cycle stops at its mean: wrong for the time of day in both directions
        ("both", 50.0, True),
        # stuck at the daily low: only ever too low
        ("down", 10.0, True),
        ("up", 10.0, False),
    ],
)
def test_seasonal_sees_a_missing_cycle(direction: Direction, level: float, alarms: bool) -> None:
    rng = random.Random(2)
    seasonal = SeasonalLikelihood(direction=direction)
    days = int(5 * DAY / STEP)
    usual = [seasonal.step(i * STEP, _daily(i * STEP, rng)) for i in range(days)]
    # Noon to midnight of day six: the cycle does not happen.
    start = days + int(DAY / 4 / STEP)
    stuck = [seasonal.step(i * STEP, level) for i in range(start, start + int(DAY / 2 / STEP))]
    assert max(usual[int(2 * DAY / STEP) :]) < 0.99
    assert (max(stuck) > 0.99) is alarms


@pytest.mark.parametrize("bin_prior", [None, 10.0])
def test_seasonal_step_is_score_then_learn_and_pickles(bin_prior: float | None) -> None:
    rng = random.Random(3)
    stepped = SeasonalLikelihood(bin_prior=bin_prior)
    called = SeasonalLikelihood(bin_prior=bin_prior)
    for i in range(int(3 * DAY / STEP)):
        t, x = i * STEP, _daily(i * STEP, rng)
        if i % 500 == 7:
            x = math.nan
        expected = called.score_one(t, x)
        called.learn_one(t, x)
        assert stepped.step(t, x) == expected
    clone = pickle.loads(pickle.dumps(stepped))
    assert clone.step(DAY * 3, 90.0) == stepped.step(DAY * 3, 90.0)


def _square(t: float, rng: random.Random, afternoon: float = 80.0) -> float:
    """20 until noon, then `afternoon`: flat hours and two abrupt switches a day."""
    return (20.0 if t % DAY < DAY / 2 else afternoon) + rng.gauss(0.0, 1.0)


@pytest.mark.parametrize(
    ("bin_prior", "separates"),
    [
        (10.0, True),  # each bin's own spread: the flat afternoon's is small
        (None, False),  # one spread, set by the switches: an afternoon 10% low looks usual
    ],
)
def test_bin_spreads_read_a_residual_against_its_own_hours(
    bin_prior: float | None, separates: bool
) -> None:
    rng = random.Random(4)
    seasonal = SeasonalLikelihood(bin_prior=bin_prior)
    days = int(6 * DAY / STEP)
    usual = [seasonal.step(i * STEP, _square(i * STEP, rng)) for i in range(days)]
    noon, evening = days + int(DAY / 2 / STEP), days + int(0.75 * DAY / STEP)
    low = [seasonal.step(i * STEP, _square(i * STEP, rng, 72.0)) for i in range(noon, evening)]
    quiet = max(usual[int(2 * DAY / STEP) :])
    assert (max(low) > 0.97 > quiet) is separates
    assert (max(low) < quiet) is not separates


def _odd_weekly_day(detector: LikelihoodDetector) -> list[float]:
    """Scores of a day wrong for its week: four weeks of a weekly wave (every value ordinary
    for its time of day, averaged over the week), then the day at the weekly peak comes in at
    the weekly low."""
    week = 7 * DAY
    rng = random.Random(5)
    weeks = int(4 * week / STEP)
    for i in range(weeks):
        t = i * STEP
        detector.step(50.0 + 30.0 * math.sin(2 * math.pi * t / week) + rng.gauss(0.0, 2.0), t)
    start = weeks + int(1.25 * DAY / STEP)
    return [
        detector.step(20.0 + rng.gauss(0.0, 2.0), i * STEP)[0]
        for i in range(start, start + int(DAY / STEP))
    ]


@pytest.mark.parametrize(("weekly_bins", "alarms"), [(84, True), (None, False)])
def test_the_weekly_view_sees_a_day_wrong_for_its_week(
    weekly_bins: int | None, alarms: bool
) -> None:
    # Without the persistence forecast: the sudden drop would alarm it on its own. Without
    # the quiet period, and on the likelihood's own scale: the point model alarms weakly
    # (0.987) at the drop, which would mute the view; here the view is tested alone.
    detector = LikelihoodDetector(
        weekly_bins=weekly_bins, persistence_ratio=None, quiet=0, alarm_level=None
    )
    assert (max(_odd_weekly_day(detector)) > 0.99) is alarms


@pytest.mark.parametrize(("quiet", "alarms"), [(100, 1), (0, 2)])
def test_one_event_seen_by_the_point_model_and_a_view_alarms_once(quiet: int, alarms: int) -> None:
    # The shipped model: the point likelihood alarms at the drop, the weekly view a point
    # later; the quiet period after the first alarm mutes the second.
    odd = _odd_weekly_day(LikelihoodDetector(persistence_ratio=None, quiet=quiet))
    assert odd[0] >= 0.99
    assert sum(score >= 0.99 for score in odd) == alarms


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"bin_prior": 0.0}, "bin_prior"), ({"bin_alpha": 0.0}, "bin_alpha")],
)
def test_seasonal_rejects_bad_bin_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SeasonalLikelihood(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"direction": "up", "ceiling": 200.0},
        {"drift_window": None},
        {"seasonal_bins": None, "direction": "down"},
        {"weekly_bins": None, "seasonal_bin_prior": None},
    ],
)
def test_detector_step_with_time_is_score_continues_then_learn(
    kwargs: dict[str, object],
) -> None:
    rng = random.Random(9)
    stepped = LikelihoodDetector(**kwargs)  # type: ignore[arg-type]
    called = LikelihoodDetector(**kwargs)  # type: ignore[arg-type]
    alarms = 0
    for i in range(int(4 * DAY / STEP)):
        t = i * STEP
        x = _daily(t, rng)
        if int(3 * DAY / STEP) <= i < int(3.5 * DAY / STEP):
            x = 50.0  # the cycle stops for half a day
        if i in (int(2.5 * DAY / STEP), int(2.6 * DAY / STEP)):
            x = 500.0 if i == int(2.5 * DAY / STEP) else -400.0  # a spike and a dip
        if i % 997 == 5:
            x = math.inf
        expected = (called.score_one(x, t), called.continues(x))
        called.learn_one(x, t)
        assert stepped.step(x, t) == expected
        alarms += expected[0] >= 0.99
    assert alarms > 0


def test_the_seasonal_view_alarms_where_the_point_model_does_not() -> None:
    # A daily cycle that stops at its own mean: no point is unusual for the series as a
    # whole, only for its time of day.
    def run(seasonal_bins: int | None) -> float:
        rng = random.Random(10)
        detector = LikelihoodDetector(seasonal_bins=seasonal_bins, weekly_bins=None)
        scores = []
        for i in range(int(5 * DAY / STEP)):
            t = i * STEP
            stopped = int(4 * DAY / STEP) <= i
            scores.append(detector.step(50.0 if stopped else _daily(t, rng), t)[0])
        return max(scores[int(4 * DAY / STEP) :])

    assert run(seasonal_bins=None) < 0.99
    assert run(seasonal_bins=48) > 0.99


def test_extreme_values_keep_scores_in_the_unit_interval_and_the_views_alive() -> None:
    rng = random.Random(11)
    detector = LikelihoodDetector()
    steps = int(3 * DAY / STEP)
    values = [_daily(i * STEP, rng) for i in range(steps)]
    values[steps // 2] = 1e300  # one absurd value: its square overflows
    values[steps // 2 + 1] = -1e300
    scores = [detector.step(x, i * STEP)[0] for i, x in enumerate(values)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    # The seasonal view still works afterwards: the cycle stopping is seen on day four.
    stuck = [detector.step(50.0, (steps + i) * STEP)[0] for i in range(int(DAY / 2 / STEP))]
    assert max(stuck) > 0.99


def test_a_constant_series_that_starts_moving_is_learned() -> None:
    # A constant series has no residual spread: nothing may count as absurd then, or the
    # profile would never learn the series' new life and the view would stay silent.
    seasonal = SeasonalLikelihood()
    steps = int(2 * DAY / STEP)
    for i in range(steps):
        seasonal.step(i * STEP, 5.0)
    rng = random.Random(12)
    for i in range(steps, 3 * steps):
        seasonal.step(i * STEP, _daily(i * STEP, rng))
    predicted = seasonal._profile.predict_one(6 * 3600.0)
    assert predicted is not None
    assert predicted == pytest.approx(90.0, abs=10.0)  # the new daily shape, not the old 5
    assert seasonal._power > 1.0


# --- novelty ----------------------------------------------------------------------------------


def _idle_with_a_spike(after: int = 100) -> Novelty:
    """A novelty view that saw a series idle between 10 and 16, and one spike to 100."""
    novelty = Novelty(bins=64, after=after)
    for step in range(1000):
        novelty.learn_one(10.0 + step % 7 if step != 500 else 100.0)
    return novelty


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.0, 0.0),  # the idle level
        (16.5, 0.0),  # beside it (the neighbouring bin was visited)
        (99.0, 0.0),  # beside the spike
        (40.0, 1.0),  # inside the range, never near any value
        (70.0, 1.0),
        (130.0, 1.0),  # above the range but still on the grid (a small new record)
        (500.0, 0.0),  # off the grid: the range breach's to judge
        (-50.0, 0.0),
        (math.nan, 0.0),
        (math.inf, 0.0),
    ],
)
def test_novelty_scores_values_where_the_series_never_was(value: float, expected: float) -> None:
    assert _idle_with_a_spike().score_one(value) == expected


def test_novelty_is_silent_until_after_values() -> None:
    assert _idle_with_a_spike(after=2000).score_one(40.0) == 0.0
    assert _idle_with_a_spike(after=1000).score_one(40.0) == 1.0


def test_novelty_grid_widens_and_keeps_what_it_saw() -> None:
    novelty = Novelty(bins=8, after=0)
    for value in (0.0, 1.0, 2.0, 3.0):
        novelty.learn_one(value)
    width = novelty._width
    novelty.learn_one(100.0)  # doubles the grid until it holds 100
    assert novelty._width > width
    assert novelty.score_one(1.5) == 0.0  # the early values' bins survived the merges
    assert novelty.score_one(50.0) == 1.0
    assert novelty.n_seen == 5


def test_novelty_does_not_learn_an_absurd_value() -> None:
    novelty = Novelty(bins=8, after=0)
    for value in (0.0, 1.0, 2.0, 3.0):
        novelty.learn_one(value)
    grid = (novelty._origin, novelty._width, novelty._visited)
    novelty.learn_one(1e300)
    novelty.learn_one(-1e300)
    assert (novelty._origin, novelty._width, novelty._visited) == grid
    assert novelty.n_seen == 4


def test_novelty_of_a_constant_series_waits_for_a_second_value() -> None:
    novelty = Novelty(bins=8, after=0)
    for _ in range(50):
        novelty.learn_one(5.0)
    assert novelty.score_one(6.0) == 0.0  # no grid yet: a constant series has no inside
    novelty.learn_one(7.0)
    assert novelty.score_one(5.0) == 0.0
    assert novelty.score_one(6.0) == 1.0  # between the two values seen, beside neither
    assert novelty.n_seen == 51


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bins": 3}, "even number"),
        ({"bins": 66}, "even number"),
        ({"bins": 2}, "even number"),
        ({"after": -1}, "after must be >= 0"),
    ],
)
def test_novelty_rejects_bad_settings(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Novelty(**kwargs)


def _idle_spike_dip(direction: Direction, probe: float) -> float:
    """The score of `probe` from a detector that saw 1,500 points idle around 50 (a spike to
    100 at row 300, a dip to 0 at row 400)."""
    rng = random.Random(4)
    detector = LikelihoodDetector(direction=direction)
    for step in range(1500):
        value = 100.0 if step == 300 else 0.0 if step == 400 else rng.gauss(50.0, 1.0)
        detector.step(value, step * STEP)
    return detector.step(probe, 1500 * STEP)[0]


@pytest.mark.parametrize(
    ("direction", "probe", "novel"),
    [
        ("both", 75.0, True),
        ("both", 25.0, True),
        ("up", 75.0, True),
        ("up", 25.0, False),  # the harmless side
        ("down", 25.0, True),
        ("down", 75.0, False),
        ("both", 50.5, False),  # the idle level
    ],
)
def test_the_detector_alarms_on_novelty_on_its_alarming_side(
    direction: Direction, probe: float, novel: bool
) -> None:
    # Only a range breach or the novelty view scores exactly 1.0; neither probe breaks the
    # range, so 1.0 is the novelty view's alarm.
    assert (_idle_spike_dip(direction, probe) == 1.0) is novel


# --- descriptions (the compiled model's layout is generated from them) -----------------------


@pytest.mark.parametrize(
    ("part", "fresh"),
    [
        # a gate's countdown
        (Gate(sigmas=5.0, quiet=3), lambda g: [g._left]),
        # a profile's means, then its weights, one per bin
        (SeasonalProfile(bins=6), lambda p: [*p._means, *p._counts]),
        # a seasonal view's own numbers, then each bin's residual power (with a prior)
        (
            SeasonalLikelihood(bins=5, bin_prior=2.0),
            lambda v: [v._power, v._residuals, *v._bin_power],
        ),
        # ... and none without one
        (SeasonalLikelihood(bins=5), lambda v: [v._power, v._residuals]),
        # the novelty grid: no edge, no width, no bit visited, no value
        (
            Novelty(bins=16, after=5),
            lambda n: [n._origin, n._width, n._visited & 0xFFFFFFFF, n._visited >> 32, n._n],
        ),
    ],
)
def test_parts_describe_their_fresh_state_and_settings(
    part: Gate | SeasonalProfile | SeasonalLikelihood | Novelty,
    fresh: Callable[[Any], list[float]],
) -> None:
    assert fresh_values(part.state_fields()) == [float(x) for x in fresh(part)]
    assert described_parameters_match(part)


@pytest.mark.parametrize(
    ("view", "parts"),
    [
        # a seasonal view's profile and likelihood, as it built them
        (SeasonalLikelihood(bins=5, window=4), ("_profile", "_likelihood")),
        # a drift view's likelihood
        (DriftLikelihood(window=4), ("_likelihood",)),
    ],
)
def test_views_show_their_parts(
    view: SeasonalLikelihood | DriftLikelihood, parts: tuple[str, ...]
) -> None:
    for name in parts:
        assert getattr(view, name.lstrip("_")) is getattr(view, name)
    assert described_parameters_match(view)


@pytest.mark.parametrize(
    ("direction", "sign"),
    [
        # an upward or two-sided drift reads z as it is
        ("up", 1.0),
        ("both", 1.0),
        # a downward one reads -z
        ("down", -1.0),
    ],
)
def test_a_drift_view_describes_its_sign(direction: Direction, sign: float) -> None:
    described = {f.name: f.value for f in DriftLikelihood(direction=direction).parameter_fields()}
    assert described == {"cap": 3.0, "sign": sign}
