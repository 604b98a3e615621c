"""Scores that mean "rare for this series": an anomaly likelihood over the golden residuals
(`detectors.scoring.AnomalyLikelihood`), range breaches, a refractory period, and the drift
and seasonal second opinions of `detectors.views`. Each piece is a small River-style model;
`LikelihoodDetector` puts them together: the specification of the detect stage's default
model, which runs it compiled (`detectors.compiled`).

Why: the golden detector's per-point tail probability assumes its spread describes the
residuals. On real streams (NAB's CPU, traffic, tweet counts) residuals are far heavier
tailed than that, so a single threshold either pages all the time on rough series or never
on smooth ones. The likelihood compares the *recent* surprise with the series' own long
history of surprise, which puts rough and smooth series on one scale (the idea of HTM's
anomaly likelihood, Ahmad et al. 2017, here over a Gaussian residual model).

The pieces live in their own modules (`detectors.breach`, `detectors.refractory`,
`detectors.persistence`, `detectors.detector`); this one gathers their names.

>>> detector = LikelihoodDetector()
>>> detector.score_one(10.0), detector.live  # nothing learned yet: no opinion
(0.0, False)
"""

from __future__ import annotations

from detectors.breach import TAME_SPREADS, RangeBreach
from detectors.detector import PARTS, WEEK, LikelihoodDetector, Part, Parts
from detectors.gate import ABSURD_SPREADS
from detectors.persistence import Persistence
from detectors.refractory import Refractory
from detectors.scoring import AnomalyLikelihood, one_sided_confidence

__all__ = [
    "ABSURD_SPREADS",
    "PARTS",
    "TAME_SPREADS",
    "WEEK",
    "AnomalyLikelihood",
    "LikelihoodDetector",
    "Part",
    "Parts",
    "Persistence",
    "RangeBreach",
    "Refractory",
    "one_sided_confidence",
]
