"""The compiled likelihood model against its Python specification, point for point."""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

import pytest

from detectors.compiled import CompiledLikelihood, compiled_layout, detector_for_signal
from detectors.likelihood import LikelihoodDetector, Persistence, RangeBreach
from detectors.views import Novelty
from tests.builders import SIGNAL_MODELS


def _stream(seed: int, n: int = 8000) -> list[tuple[float, float | None]]:
    """(value, time) pairs: a daily cycle with noise, spikes, a burst, a level shift, a cycle
    that stops, a smooth random walk, absurd and non-finite values, and some points without
    (or with odd) times."""
    rng = random.Random(seed)
    out: list[tuple[float, float | None]] = []
    walk = 75.0
    for i in range(n):
        t = 1_400_000_000.0 + i * 300.0
        x = 50.0 + 20.0 * math.sin(2 * math.pi * t / 86400.0) + rng.gauss(0.0, 3.0)
        if rng.random() < 0.01:
            x += rng.choice([1.0, -1.0]) * rng.expovariate(0.05)
        if 2000 <= i < 2040:
            x += 80.0
        if 4000 <= i < 4400:
            x = 50.0 + rng.gauss(0.0, 3.0)  # the daily cycle fails to happen
        if i >= 6000:
            x += 25.0
        if 6500 <= i < 7500:  # smooth (the last value forecasts the next best), one step
            walk += rng.gauss(0.0, 0.3) + (15.0 if i == 7000 else 0.0)
            x = walk
        roll = rng.random()
        if roll < 0.002:
            x = rng.choice([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0])
        time: float | None = t
        if roll > 0.995:
            time = rng.choice([None, math.nan, -t, 0.0])
        out.append((x, time))
    return out


SETTINGS: list[dict[str, object]] = [
    {},
    {"direction": "up"},
    {"direction": "down"},
    {"direction": "up", "ceiling": 100.0},
    {"drift_window": None, "seasonal_bins": None},
    {"range_tolerance": None, "refractory": 0, "quiet": 0, "early_scores": False},
    {"quiet": 7, "refractory": 50},
    {"warmup": 5, "likelihood_warmup": 10, "tail_df": 3},
    {"short_window": 1, "drift_window": 1, "tail_df": 1},
    {"seasonal_bins": 7, "seasonal_period": 3600.0, "drift_window": 5, "drift_quiet": 0},
    {"alpha": 0.2, "spread_alpha": 0.05, "surprise_cap": 3.0, "hold_sigmas": 3.0},
    {"weekly_bins": None, "seasonal_bin_prior": None},
    {"seasonal_bins": None, "weekly_bins": 10, "seasonal_window": 5, "weekly_quiet": 0},
    {"novelty_bins": 32, "novelty_after": 50, "novelty_quiet": 0},
    {"novelty_bins": 64, "novelty_after": 50, "direction": "up", "novelty_quiet": 10},
    {"novelty_bins": 4, "novelty_after": 0, "novelty_quiet": 20, "direction": "down"},
    {"novelty_bins": None},
    {"persistence_ratio": None},
    {"persistence_ratio": 2.0, "persistence_alpha": 0.2, "direction": "down"},
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_compiled_steps_exactly_like_the_specification(settings: dict[str, object]) -> None:
    compiled = CompiledLikelihood(**settings)
    reference = LikelihoodDetector(**settings)  # type: ignore[arg-type]
    alarms = continued = 0
    for x, t in _stream(seed=len(settings)):
        expected = reference.step(x, t)
        assert compiled.step(x, t) == expected
        alarms += expected[0] >= 0.99
        continued += expected[1]
    assert compiled.expected == reference.expected
    assert compiled.n_seen == reference.n_seen
    assert compiled.live == reference.live
    assert alarms > 0  # the stream went through the alarm paths


@pytest.mark.parametrize("settings", [{}, {"direction": "up", "novelty_bins": None}])
def test_reference_is_a_fresh_specification_with_the_same_settings(
    settings: dict[str, object],
) -> None:
    compiled = CompiledLikelihood(**settings)
    for x, t in _stream(seed=3, n=500):
        compiled.step(x, t)
    reference = compiled.reference()  # fresh: the compiled model's history is not in it
    assert reference.n_seen == 0
    assert reference._get_params() == LikelihoodDetector(**settings)._get_params()  # type: ignore[arg-type]
    again = CompiledLikelihood(**settings)
    for x, t in _stream(seed=4, n=3000):
        assert reference.step(x, t) == again.step(x, t)


def test_the_reference_stream_exercises_continuation() -> None:
    reference = LikelihoodDetector()
    assert any(reference.step(x, t)[1] for x, t in _stream(seed=0))


def test_the_reference_stream_exercises_the_persistence_forecast() -> None:
    with_it, without = LikelihoodDetector(), LikelihoodDetector(persistence_ratio=None)
    smooth = differ = 0
    for x, t in _stream(seed=0):
        persistence = with_it._persistence
        assert persistence is not None
        smooth += persistence.smooth
        differ += with_it.step(x, t) != without.step(x, t)
    assert smooth > 500  # the random walk is smooth enough for it
    assert differ > 100


def test_the_reference_stream_exercises_the_novelty_view() -> None:
    settings: dict[str, object] = {"novelty_bins": 16, "novelty_after": 50, "novelty_quiet": 0}
    with_it = LikelihoodDetector(**settings)  # type: ignore[arg-type]
    without = LikelihoodDetector(novelty_bins=None)
    differ = 0
    for x, t in _stream(seed=0):
        differ += with_it.step(x, t) != without.step(x, t)
    assert differ > 0
    novelty = with_it._novelty
    assert novelty is not None
    # The grid widened to hold the stream, but not to the ±1e300 values in it.
    assert 0 < novelty._width * novelty.bins < 1e6


def test_the_reference_stream_exercises_the_tamed_range() -> None:
    reference = LikelihoodDetector()
    for x, t in _stream(seed=0):
        reference.step(x, t)
    breach = reference._range
    assert breach is not None
    # The stream's ±1e300 values breached and widened the range by a few ranges only.
    assert -1e6 < breach._low < breach._high < 1e6


def test_an_absurd_value_leaves_later_records_to_breach_compiled_too() -> None:
    compiled, reference = CompiledLikelihood(), LikelihoodDetector()
    values = [10.0, 20.0] * 100 + [1e300] + [15.0] * 20 + [90.0]
    steps = [(compiled.step(x), reference.step(x)) for x in values]
    assert all(fast == spec for fast, spec in steps)
    assert steps[-1][1][0] == 1.0  # the range is 10 to 80 after 1e300: 90 breaks out


def test_peeking_does_not_learn() -> None:
    compiled = CompiledLikelihood()
    reference = LikelihoodDetector()
    for x, t in _stream(seed=3, n=3000):
        assert compiled.score_one(x, t) == reference.score_one(x, t)
        assert compiled.continues(x) == reference.continues(x)
        compiled.learn_one(x, t)
        reference.learn_one(x, t)
    assert compiled.expected == reference.expected


def test_pickle_round_trip_continues_identically() -> None:
    stream = _stream(seed=4, n=4000)
    original = CompiledLikelihood(direction="up")
    for x, t in stream[:2500]:
        original.step(x, t)
    copy = pickle.loads(pickle.dumps(original))
    assert repr(copy) == repr(original) == "CompiledLikelihood(direction='up')"
    assert [copy.step(x, t) for x, t in stream[2500:]] == [
        original.step(x, t) for x, t in stream[2500:]
    ]


def test_a_state_of_another_layout_is_refused() -> None:
    settings, data = CompiledLikelihood(seasonal_bins=None).__getstate__()
    target = CompiledLikelihood.__new__(CompiledLikelihood)
    with pytest.raises(ValueError, match="does not fit"):
        target.__setstate__(((), data))
    target.__setstate__((settings, data))
    assert target.n_seen == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"surprise_cap": 0.0}, "surprise_cap"),
        ({"persistence_ratio": 0.0}, "persistence ratio"),
        ({"persistence_alpha": 0.0}, "persistence alpha"),
        ({"hold_sigmas": 7.0}, "hold_sigmas"),
        ({"direction": "sideways"}, "direction"),
        ({"short_window": 0}, "short_window"),
        ({"seasonal_bins": 1}, "bins"),
    ],
)
def test_bad_settings_fail_like_the_specification(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CompiledLikelihood(**settings)


def test_state_is_one_small_array() -> None:
    _, floats = compiled_layout()
    # fixed slots (17, the persistence forecast's 8, the quiet period's 1 and the novelty
    # view's 6), the point and drift likelihoods, the daily view (its slots, likelihood,
    # means, weights and bin spreads) and the weekly view (no bin spreads)
    assert floats == 32 + (7 + 9) + (7 + 29) + (3 + 7 + 29 + 3 * 48) + (3 + 7 + 29 + 2 * 84)
    detector = CompiledLikelihood()
    for x, t in _stream(seed=5, n=3000):
        detector.step(x, t)
    size = len(pickle.dumps(detector, pickle.HIGHEST_PROTOCOL))
    assert size < 8 * floats + 200
    assert size < 4096  # the aim per series
    assert compiled_layout(seasonal_bins=None, weekly_bins=None, drift_window=None)[1] == 32 + 16


def _floats(part: Any) -> int:
    return sum(field.size for field in part.state_fields())


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_layout_is_what_the_parts_describe(settings: dict[str, Any]) -> None:
    parts = LikelihoodDetector(**settings).parts()
    # every series keeps the fixed parts' slots, a left-out part's too (as a default one's)
    fixed = [parts.golden, parts.refractory, parts.drift_gate, parts.quiet, parts.novelty_gate]
    fixed += [parts.breach or RangeBreach(), parts.persistence or Persistence()]
    fixed += [parts.novelty or Novelty(), parts.likelihood]
    floats = sum(_floats(part) for part in fixed)
    if parts.drift is not None:
        floats += _floats(parts.drift.likelihood)
    for view, gate in ((parts.daily, parts.daily_gate), (parts.weekly, parts.weekly_gate)):
        if view is not None:
            floats += _floats(view) + _floats(gate) + _floats(view.likelihood)
            floats += _floats(view.profile)
    # the parameter vector has one shape for every setting: the kernel's offsets are constants
    assert compiled_layout(**settings) == (compiled_layout()[0], floats)


def test_series_with_the_same_settings_share_one_settings_tuple() -> None:
    first = detector_for_signal("traffic")
    second = detector_for_signal("traffic")
    restored = pickle.loads(pickle.dumps(second, pickle.HIGHEST_PROTOCOL))
    assert first._settings is second._settings is restored._settings
    other = detector_for_signal("latency")
    assert other._settings is not first._settings
    assert other._settings == (("direction", "up"), ("warmup", 30))


@pytest.mark.parametrize(("signal", "direction", "ceiling"), SIGNAL_MODELS)
def test_detector_for_signal(signal: str, direction: str, ceiling: float | None) -> None:
    detector = detector_for_signal(signal, ceiling=2.0)
    assert (detector.direction, detector.ceiling) == (direction, ceiling)


def test_detector_for_an_unknown_signal_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        detector_for_signal("vibes")


def test_without_a_writable_cache_the_kernel_still_compiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from numba import njit
    from numba.core import caching

    from detectors import compiled

    def triple(x: float) -> float:
        return 3.0 * x

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    with pytest.raises(RuntimeError, match="no locator"):  # what numba does on its own
        njit(cache=True)(triple)
    assert compiled._jit(triple)(2.0) == 6.0
