"""Turns standardized residuals into calibrated scores in [0, 1] that one threshold can cut."""

from __future__ import annotations

import math

__all__ = ["two_sided_confidence"]


def two_sided_confidence(t: float, df: int) -> float:
    """P(|T| <= |t|) for Student's t with `df` degrees of freedom: 1 minus the two-sided p-value.

    A detector's score is this confidence, so a threshold of 0.99 means "a residual this large
    happens less than once in a hundred points under the learned spread". Student's t rather than
    the normal law because the spread is itself estimated, and telemetry residuals have heavier
    tails than Gaussian noise; small `df` is more conservative.

    The closed forms for integer `df` (Abramowitz and Stegun 26.7.3 and 26.7.4) keep this a few
    multiplications, with no SciPy call on the per-point path.

    >>> round(two_sided_confidence(1.0, 1), 6)  # Cauchy: half the mass lies within 1
    0.5
    >>> round(two_sided_confidence(3.169, 10), 4)  # the 99% two-sided quantile of t(10)
    0.99
    >>> two_sided_confidence(0.0, 10)
    0.0
    """
    if df < 1:
        raise ValueError(f"df must be a positive integer, got {df}")
    if math.isnan(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    cos2 = cos * cos
    if df % 2 == 0:
        # sin(theta) * sum_{k < df/2} [(1*3*..*(2k-1)) / (2*4*..*2k)] * cos(theta)^(2k)
        term = 1.0
        total = 1.0
        for k in range(1, df // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        confidence = sin * total
    else:
        # (2/pi) * (theta + sin*cos * sum_{k < (df-1)/2} [(2*4*..*2k) / (3*5*..*(2k+1))] cos^(2k))
        series = 0.0
        if df > 1:
            term = 1.0
            series = 1.0
            for k in range(1, (df - 1) // 2):
                term *= cos2 * (2 * k) / (2 * k + 1)
                series += term
        confidence = 2.0 / math.pi * (theta + sin * cos * series)
    return min(max(confidence, 0.0), 1.0)
