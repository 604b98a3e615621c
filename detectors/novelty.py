"""The novelty view: whether a value falls where the series has never been."""

from __future__ import annotations

import math

from detectors.gate import ABSURD_SPREADS
from detectors.layout import Field

__all__ = ["Novelty"]


class Novelty:
    """Whether a value falls where the series has never been: no earlier value in its bin or
    the bins beside it, on a grid of `bins` equal bins that doubles its width to hold every
    value (each doubling merges neighbouring pairs of bins).

    A series that idles at one level and once spiked to ten times it has a wide spread and a
    wide range ever after; a later value at three times the level is then ordinary for the
    likelihood and no record for the range breach, yet no value ever came near it. Only
    *whether* a bin was visited is kept, one bit per bin (`bins` at most 64), so the state is
    a few numbers. The grid starts from the first two distinct values (their span in the
    middle half of it) and scores only once `after` values were learned; a value outside the
    grid scores 0 (that is the range breach's to judge), and a value further outside than
    `ABSURD_SPREADS` grid spans is not learned, so one absurd value cannot blur the grid.
    River-style: `score_one` (1.0 or 0.0) changes nothing, `learn_one` learns.

    >>> novelty = Novelty(bins=64, after=100)
    >>> for step in range(1000):
    ...     novelty.learn_one(10.0 + step % 7 if step != 500 else 100.0)  # idles, one spike
    >>> novelty.score_one(12.0), novelty.score_one(99.0)  # the idle level, by the spike
    (0.0, 0.0)
    >>> novelty.score_one(40.0)  # inside the range, never visited
    1.0
    >>> novelty.score_one(500.0)  # outside the grid: for the range breach
    0.0
    """

    __slots__ = ("_n", "_origin", "_visited", "_width", "after", "bins")

    def __init__(self, bins: int = 64, after: int = 1000) -> None:
        if not 4 <= bins <= 64 or bins % 2:
            raise ValueError(f"novelty bins must be an even number from 4 to 64, got {bins}")
        if after < 0:
            raise ValueError(f"novelty after must be >= 0, got {after}")
        self.bins = bins
        self.after = after
        self._origin = 0.0  # the grid's lower edge; the first value until the grid exists
        self._width = 0.0  # a bin's width; 0 until two distinct values were seen
        self._visited = 0  # bit i: some value fell in bin i
        self._n = 0  # values learned

    def parameter_fields(self) -> tuple[Field, ...]:
        """What `step` reads: the number of bins and the values learned before it speaks."""
        return (Field("bins", self.bins), Field("after", self.after))

    def state_fields(self) -> tuple[Field, ...]:
        """Its state as floats, fresh: the grid's lower edge and bin width, the visited bits
        0-31 and 32-63 (each word a whole number below 2**32, exact in a float), the count."""
        return (
            Field("origin"),
            Field("width"),
            Field("visited_low"),
            Field("visited_high"),
            Field("n_seen"),
        )

    @property
    def n_seen(self) -> int:
        """How many values were learned."""
        return self._n

    def _position(self, x: float) -> float:
        """Where `x` falls on the grid, in bins (the grid holds [0, bins))."""
        return (x - self._origin) / self._width

    def score_one(self, x: float) -> float:
        """1.0 when `x` falls on the grid with its bin and both neighbours unvisited, after
        `after` values; else 0.0. Changes nothing."""
        if self._n < self.after or self._width == 0.0 or not math.isfinite(x):
            return 0.0
        position = self._position(x)
        if not 0.0 <= position < self.bins:
            return 0.0
        at = int(position)
        low = at - 1 if at > 0 else 0
        high = at + 1 if at + 1 < self.bins else at
        near = ((1 << (high - low + 1)) - 1) << low
        return 0.0 if self._visited & near else 1.0

    def learn_one(self, x: float) -> None:
        """Mark `x`'s bin visited, first widening the grid until it holds `x`."""
        if not math.isfinite(x):
            return
        if self._n == 0:
            self._origin = x
            self._n = 1
            return
        bins = self.bins
        if self._width == 0.0:
            first = self._origin
            span = abs(x - first)
            width = 2.0 * span / bins
            if not (0.0 < width < math.inf):  # the same value again (or a span past floats)
                self._n += 1
                return
            self._width = width
            self._origin = min(first, x) - 0.5 * span
            self._visited = 1 << int(self._position(first))
        span = bins * self._width
        if x > self._origin + span + ABSURD_SPREADS * span or (
            x < self._origin - ABSURD_SPREADS * span
        ):
            return
        position = self._position(x)
        while not 0.0 <= position < bins:
            half = bins // 2
            merged = 0
            for pair in range(half):
                if (self._visited >> (2 * pair)) & 3:
                    merged |= 1 << pair
            if position >= bins:
                self._visited = merged
            else:
                self._visited = merged << half
                self._origin -= bins * self._width
            self._width *= 2.0
            position = self._position(x)
        self._visited |= 1 << int(position)
        self._n += 1

    def step(self, x: float) -> float:
        """`score_one(x)`, then `learn_one(x)`."""
        score = self.score_one(x)
        self.learn_one(x)
        return score
