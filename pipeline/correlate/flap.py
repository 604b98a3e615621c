"""Flap detection: a series that keeps toggling in and out of anomaly stops counting toward a page.

Nagios-style, on the anomaly stream alone. A series *re-enters* anomaly when an anomaly comes
more than `gap` (the correlator's `hold_max_gap`) after its previous one: it was normal in
between, so that is two state changes (out, then in). Its flap percent is the share of the
state changes possible in the last `window` that happened, where one change is possible per
`gap`. A series seen for less than a window is judged over the time since it was first seen,
but over no less than a sixth of the window, so three re-entries within ten minutes of an
hour-long window make it flap (one or two misses in a real fault do not). A series starts
flapping when the percent reaches `high` and stops only once it drops
below `low` (hysteresis, so a series near the line does not flip its flapping state either).

That measure misses a slow flap: on for a minute or two, then off for longer than the
correlator's `resolve_after`, every episode a new incident that pages (one every six minutes
is 15 % of the changes possible in an hour). So a series whose episodes have triggered
`max_pages` pages within the last `window` is flapping too, until fewer have.

Pure and bounded: at most `max_series` series are tracked, least recently seen dropped first,
and a series quiet for a whole `window` is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class FlapState:
    """One series' recent re-entries into anomaly and whether it is flapping."""

    first_ts: float
    last_ts: float
    entries: deque[float] = field(default_factory=deque)
    flapping: bool = False
    pages: deque[float] = field(default_factory=deque)  # episodes that paged (or would have)
    paged_episode: float | None = None  # the start of the last episode counted in `pages`


class FlapDetector:
    """Tracks each series' state changes and says, with hysteresis, which ones flap.

    >>> f = FlapDetector(window=3600.0, gap=30.0, high=20.0, low=10.0)
    >>> [f.observe("s", t) for t in (0.0, 120.0, 240.0)]
    [False, False, True]
    >>> round(f.percent("s", 240.0), 1)
    20.0
    """

    def __init__(
        self,
        window: float,
        gap: float,
        high: float,
        low: float,
        max_series: int = 100_000,
        max_pages: int = 0,
    ) -> None:
        if not 0.0 <= low < high:
            raise ValueError("flap thresholds need 0 <= low < high")
        self.window = window
        self.gap = gap
        self.high = high
        self.low = low
        self.max_series = max_series
        self.max_pages = max_pages  # 0: pages do not count
        self._series: OrderedDict[str, FlapState] = OrderedDict()

    def observe(self, series: str, ts: float) -> bool:
        """Record an anomaly of `series` at `ts`; returns whether the series is now flapping."""
        state = self._series.get(series)
        if state is None:
            state = self._series[series] = FlapState(ts, ts)
            self._bound(ts)
            return False
        self._series.move_to_end(series)
        if ts - state.last_ts > self.gap:
            state.entries.append(ts)
        state.last_ts = max(state.last_ts, ts)
        percent = self._percent(state, ts)
        if not state.flapping and percent >= self.high:
            state.flapping = True
        elif state.flapping and percent < self.low:
            state.flapping = False
        return state.flapping or self._paged_out(state, ts)

    def paged(self, series: str, ts: float) -> None:
        """Record that the current episode of `series` paged at `ts`, or held long enough that
        it would have, were the series not flapping (each episode counts once). So a flap that
        keeps going stays flapping: its own held episodes keep the count up."""
        state = self._series.get(series)
        if state is None:
            return
        episode = state.entries[-1] if state.entries else state.first_ts
        if state.paged_episode != episode:
            state.paged_episode = episode
            state.pages.append(ts)

    def _paged_out(self, state: FlapState, now: float) -> bool:
        """Whether the series' episodes have paged `max_pages` times within the window."""
        while state.pages and state.pages[0] <= now - self.window:
            state.pages.popleft()
        return 0 < self.max_pages <= len(state.pages)

    def flapping(self, series: str) -> bool:
        """Whether `series` is flapping, as of its last anomaly."""
        state = self._series.get(series)
        return state is not None and state.flapping

    def percent(self, series: str, now: float) -> float:
        """The flap percent of `series` at `now` (0 for an unknown series)."""
        state = self._series.get(series)
        return 0.0 if state is None else self._percent(state, now)

    def _percent(self, state: FlapState, now: float) -> float:
        while state.entries and state.entries[0] <= now - self.window:
            state.entries.popleft()
        span = max(min(self.window, now - state.first_ts), self.window / 6)
        possible = max(1.0, span / self.gap) if self.gap > 0 else 1.0
        return min(100.0, 100.0 * 2 * len(state.entries) / possible)

    def _bound(self, now: float) -> None:
        while len(self._series) > self.max_series:
            self._series.popitem(last=False)
        while self._series:
            state = next(iter(self._series.values()))
            if state.last_ts > now - self.window:
                break
            self._series.popitem(last=False)

    def __len__(self) -> int:
        return len(self._series)

    # ----------------------------------------------------------------- state

    def snapshot(self) -> list[dict[str, Any]]:
        """The tracked series as JSON-able data, least recently seen first."""
        return [
            {
                "series": name,
                "first_ts": state.first_ts,
                "last_ts": state.last_ts,
                "entries": list(state.entries),
                "flapping": state.flapping,
                "pages": list(state.pages),
                "paged_episode": state.paged_episode,
            }
            for name, state in self._series.items()
        ]

    def restore(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Replace the tracked series with a `snapshot()`."""
        self._series = OrderedDict(
            (
                str(item["series"]),
                FlapState(
                    float(item["first_ts"]),
                    float(item["last_ts"]),
                    deque(float(t) for t in item["entries"]),
                    bool(item["flapping"]),
                    deque(float(t) for t in item.get("pages", ())),
                    None if item.get("paged_episode") is None else float(item["paged_episode"]),
                ),
            )
            for item in items
        )
