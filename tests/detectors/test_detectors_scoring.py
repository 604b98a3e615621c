"""Student's t confidence against closed forms and published quantiles."""

from __future__ import annotations

import math

import pytest

from detectors.scoring import two_sided_confidence


@pytest.mark.parametrize(
    ("df", "t", "expected"),
    [
        # Cauchy: 2/pi * atan(t)
        (1, 1.0, 0.5),
        (1, 3.0, 2 / math.pi * math.atan(3.0)),
        # df=2 has the closed form t / sqrt(t^2 + 2)
        (2, 1.5, 1.5 / math.sqrt(1.5**2 + 2)),
        (2, 40.0, 40.0 / math.sqrt(40.0**2 + 2)),
        # df=3: 2/pi * (atan(u) + u / (1 + u^2)), u = t / sqrt(3)
        (3, 2.0, 2 / math.pi * (math.atan(2 / math.sqrt(3)) + (2 / math.sqrt(3)) / (1 + 4 / 3))),
        # zero residual: no confidence at all
        (10, 0.0, 0.0),
        # the sign does not matter
        (4, -2.0, two_sided_confidence(2.0, 4)),
    ],
)
def test_matches_closed_forms(df: int, t: float, expected: float) -> None:
    assert two_sided_confidence(t, df) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("df", "quantile", "confidence"),
    [
        # two-sided critical values from the t table
        (5, 4.032, 0.99),
        (10, 3.169, 0.99),
        (10, 4.587, 0.999),
        (11, 3.106, 0.99),
        (30, 2.750, 0.99),
        (30, 2.042, 0.95),
    ],
)
def test_matches_t_table(df: int, quantile: float, confidence: float) -> None:
    assert two_sided_confidence(quantile, df) == pytest.approx(confidence, abs=2e-4)


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0, 3.0])
def test_tends_to_the_normal_law(t: float) -> None:
    assert two_sided_confidence(t, 2000) == pytest.approx(math.erf(t / math.sqrt(2)), abs=1e-3)


@pytest.mark.parametrize("t", [math.nan, math.inf, -math.inf, 1e308])
def test_extremes_stay_in_the_unit_interval(t: float) -> None:
    assert 0.0 <= two_sided_confidence(t, 10) <= 1.0


def test_nan_scores_zero() -> None:
    assert two_sided_confidence(math.nan, 10) == 0.0


@pytest.mark.parametrize("df", [1, 2, 7, 10])
def test_increases_with_the_residual(df: int) -> None:
    values = [two_sided_confidence(t / 10, df) for t in range(100)]
    assert values == sorted(values)
    assert values[-1] > values[1]


def test_rejects_non_positive_df() -> None:
    with pytest.raises(ValueError, match="df must be a positive integer"):
        two_sided_confidence(1.0, 0)
