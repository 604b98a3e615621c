"""Second opinions for the likelihood detector: a level drift, a broken daily or weekly
pattern, and a value where the series has never been.

The likelihood detector scores how rare a point's squared residual is. Two kinds of anomaly
slip past it: a small shift held for a while (each residual is ordinary, their mean is not),
a daily or weekly pattern that fails to happen (a value that is ordinary for the series
but not for the time of day, or the day of the week), and a value inside the series' range
but in a part of it the series has never visited (its spread and its range are both wide
from earlier events, so neither the likelihood nor the range breach sees it). Each view below
turns one of them into its own score (an anomaly likelihood, or the novelty's 0 or 1); a
`Gate` lets a view's score through only when it is sure, so a view adds alarms, not noise.

Each view lives in its own module (`detectors.drift`, `detectors.seasonal`,
`detectors.novelty`, and the gate in `detectors.gate`); this one gathers their names.

>>> gate = Gate(sigmas=6.0, quiet=0)
>>> gate.step(0.5), gate.step(0.9999)
(0.0, 0.9999)
"""

from __future__ import annotations

from detectors.drift import DriftLikelihood
from detectors.gate import ABSURD_SPREADS, Gate
from detectors.novelty import Novelty
from detectors.seasonal import SeasonalLikelihood, SeasonalProfile

__all__ = [
    "ABSURD_SPREADS",
    "DriftLikelihood",
    "Gate",
    "Novelty",
    "SeasonalLikelihood",
    "SeasonalProfile",
]
