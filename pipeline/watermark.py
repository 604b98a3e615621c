"""Event time that one early point, or one source whose clock runs ahead, cannot move on.

Event time used to be the largest timestamp seen. One point stamped minutes ahead (an agent
whose clock ran 9 minutes fast for one minute, well inside `detect.max_future`) then moved
the correlator's clock 9 minutes on, and every real anomaly after it arrived older than
`correlate.resolve_after`: dropped as `stale`, nothing paged.

`EventClock` is the robust watermark the detect stage (per worker, and per input partition
in the live worker) and `replay` share. A *source* is who stamps the points: the
(scope, service) of a series in the detect stage, the record key (the producer's key, one per
agent in DESIGN.md) for an input partition. The rule, the same offline and live:

* A point at most `max_lead` ahead of the watermark moves it (the usual case: sources keep
  time together within their reporting interval). One behind it changes nothing.
* A point further ahead does not move it alone: its source is noted as *ahead*. Time jumps
  forward only when a quorum of sources has moved ahead (half the known sources, at least
  two): the watermark moves to the latest time that quorum has reached. That is how a real
  gap (every source quiet, then back) still moves time on, while one fast clock cannot.
* A lone source that stays ahead for `confirm` of its own time (10 `max_lead`s unless set)
  is believed: the others are taken to be gone, so time cannot freeze for good.
* When an ahead source sends a point within the present again, its clock was corrected: it
  stops being ahead (`corrections` counts it) and its series are not blinded (see
  `DetectStage.observe`, which accepts a series' point older than its last when that last
  was ahead of the present and the new one is not).
* With fewer than two known sources there is nobody to compare with: every point counts.
* `ceiling` bounds the watermark from above: the live worker sets it to its wall clock plus
  `max_lead` when `detect.max_future` is on (points are stamped near the wall clock), so not
  even a quorum moves time beyond now. Offline it stays infinite: replay has no wall clock,
  and on historical input the bound never binds live either, so replay == live.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

__all__ = ["CONFIRM_LEADS", "DEFAULT_MAX_LEAD", "EventClock", "EventTime"]

#: How far ahead of the watermark a point may be and still move it, unless configured
#: (`pipeline.config.DEFAULT_MAX_LEAD` is the same figure).
DEFAULT_MAX_LEAD: Final = 60.0
#: A lone source ahead for this many `max_lead`s of its own time is believed.
CONFIRM_LEADS: Final = 10.0
#: Sources remembered for the known-source count when the caller gives none.
_MAX_SEEN: Final = 4096


@dataclass(slots=True)
class _Ahead:
    first: float  # its first time ahead (its own clock)
    latest: float


class EventClock:
    """A watermark over sources' timestamps that an outlier source does not advance.

    >>> clock = EventClock(max_lead=60.0)
    >>> for ts, source in [(0, "a"), (0, "b"), (10, "a"), (10, "b"), (550, "b"), (20, "a")]:
    ...     clock.observe(source, ts)
    >>> clock.watermark  # b's point 540 s ahead moved nothing
    20
    >>> clock.observe("b", 20); clock.corrections  # b's clock is back
    1
    """

    __slots__ = (
        "_ahead",
        "_seen",
        "ceiling",
        "confirm",
        "corrections",
        "held",
        "max_lead",
        "watermark",
    )

    def __init__(self, max_lead: float = DEFAULT_MAX_LEAD, confirm: float | None = None) -> None:
        if not max_lead > 0:
            raise ValueError(f"max_lead must be positive, got {max_lead}")
        self.max_lead = max_lead
        self.confirm = CONFIRM_LEADS * max_lead if confirm is None else confirm
        self.watermark = -math.inf
        self.ceiling = math.inf
        self.corrections = 0  # ahead sources whose clock came back to the present
        self.held = 0  # points too far ahead to move the watermark
        self._ahead: dict[Hashable, _Ahead] = {}
        self._seen: set[Hashable] = set()

    @property
    def ahead(self) -> frozenset[Hashable]:
        """The sources now ahead of the present (their points do not move time)."""
        return frozenset(self._ahead)

    def observe(self, source: Hashable, ts: float, sources: int | None = None) -> None:
        """Note a point of `source` at `ts`. `sources` is how many sources the caller knows
        (the detect stage knows its services); when None the clock counts them itself."""
        if sources is None:
            if len(self._seen) < _MAX_SEEN:
                self._seen.add(source)
            sources = len(self._seen)
        watermark = self.watermark
        if ts <= watermark + self.max_lead or sources < 2 or watermark == -math.inf:
            if self._ahead and source in self._ahead:
                # A point within the present from a source that was ahead: its clock is back.
                del self._ahead[source]
                self.corrections += 1
            if ts > watermark:
                self._advance(ts)
            return
        self.held += 1
        entry = self._ahead.get(source)
        if entry is None:
            entry = self._ahead[source] = _Ahead(ts, ts)
        elif ts > entry.latest:
            entry.latest = ts
        if entry.latest - entry.first >= self.confirm:
            self._advance(entry.latest)  # alone, but for long enough: the others are gone
            return
        quorum = max(2, math.ceil(sources / 2))
        if len(self._ahead) >= quorum:
            # The latest time `quorum` sources have all reached.
            self._advance(heapq.nlargest(quorum, (e.latest for e in self._ahead.values()))[-1])

    def advance_to(self, ts: float) -> None:
        """Move the watermark on to `ts` (kept by a caller that judges its sources itself)."""
        self._advance(ts)

    def _advance(self, ts: float) -> None:
        ts = min(ts, self.ceiling)
        if ts <= self.watermark:
            return
        self.watermark = ts
        if self._ahead:
            present = ts + self.max_lead
            for source in [s for s, e in self._ahead.items() if e.latest <= present]:
                del self._ahead[source]


class EventTime:
    """Event time as a driver keeps it: one robust watermark per input partition, the tick
    cadence, and the advance from the wall clock while the input is quiet.

    Both drivers own one: `replay` (`pipeline.offline`) ticks through it at its watermark,
    the live detect runner at the lowest watermark of its active partitions, the live
    correlate runner advances its quiet correlators through it. `wall` is the driver's
    injected monotonic clock (seconds); offline it never reads it.

    >>> wall = [0.0]
    >>> now = EventTime(max_lead=60.0, tick_every=10.0, idle_advance=5.0, wall=lambda: wall[0])
    >>> now.note("p0", "a", 100.0), now.note("p1", "b", 130.0)
    (100.0, 130.0)
    >>> now.low(default=0.0)  # the slowest active partition holds ticks back
    100.0
    >>> wall[0] = 6.0
    >>> now.note("p1", "b", 140.0), now.low(default=0.0)  # p0 has been quiet for 6 s
    (140.0, 140.0)
    >>> now.take_tick(100.0), now.take_tick(105.0), now.take_tick(110.0)
    (True, False, True)
    """

    __slots__ = (
        "_gone",
        "_moved",
        "_quiet_since",
        "ceiling",
        "idle_advance",
        "last_tick",
        "max_lead",
        "newest",
        "partitions",
        "tick_every",
        "wall",
    )

    def __init__(
        self,
        max_lead: float,
        tick_every: float,
        idle_advance: float,
        wall: Callable[[], float],
    ) -> None:
        self.max_lead = max_lead
        self.tick_every = tick_every
        self.idle_advance = idle_advance
        self.wall = wall
        self.ceiling = math.inf
        self.partitions: dict[Hashable, EventClock] = {}
        # partition -> (its watermark, wall time when that last moved on)
        self._moved: dict[Hashable, tuple[float, float]] = {}
        self._gone = [0, 0]  # corrections, held: of partitions forgotten since
        self.last_tick = -math.inf
        self.newest = -math.inf  # the newest event time the driver was handed (`advance`)
        self._quiet_since = wall()

    # ----------------------------------------------------------------- per partition

    def note(
        self, partition: Hashable, source: Hashable, ts: float, at: float | None = None
    ) -> float:
        """A record of `source` in `partition`, stamped `ts` (its newest time), read at wall
        time `at` (now when None); returns the partition's watermark."""
        clock = self.partitions.get(partition)
        if clock is None:
            clock = self.partitions[partition] = EventClock(self.max_lead)
            clock.ceiling = self.ceiling
        clock.observe(source, ts)
        seen = self._moved.get(partition)
        if seen is None or clock.watermark > seen[0]:
            self._moved[partition] = (clock.watermark, self.wall() if at is None else at)
        return clock.watermark

    def partition_time(self, partition: Hashable) -> float | None:
        """A partition's watermark (None before its first record)."""
        seen = self._moved.get(partition)
        return seen[0] if seen is not None else None

    def low(self, default: float, at: float | None = None) -> float:
        """Event time every partition with recent data has reached; ticks may not pass it.

        A partition whose watermark has not moved for `idle_advance` stops holding time
        back, as a source that stops reporting must not freeze the clock of all the others.
        """
        wall = self.wall() if at is None else at
        idle = self.idle_advance
        active = [ts for ts, seen in self._moved.values() if wall - seen < idle]
        return min(active, default=default)

    def bound(self, ceiling: float) -> None:
        """Let no watermark pass `ceiling` (the live wall clock plus `max_lead`)."""
        self.ceiling = ceiling
        for clock in self.partitions.values():
            clock.ceiling = ceiling

    def forget(self, partition: Hashable) -> None:
        """Stop holding time back for a partition this driver no longer reads."""
        clock = self.partitions.pop(partition, None)
        if clock is not None:
            self._gone[0] += clock.corrections
            self._gone[1] += clock.held
        self._moved.pop(partition, None)

    @property
    def corrections(self) -> int:
        """Clock corrections of the partitions' watermarks (forgotten ones included)."""
        return self._gone[0] + sum(c.corrections for c in self.partitions.values())

    @property
    def held(self) -> int:
        """Records too far ahead to move their partition's watermark (forgotten ones included)."""
        return self._gone[1] + sum(c.held for c in self.partitions.values())

    # ----------------------------------------------------------------- ticks

    def take_tick(self, ts: float) -> bool:
        """Whether a tick is due at `ts` (a `tick_every` after the last); notes it when so.
        The one cadence rule of both drivers, so replay ticks where the live worker does."""
        if not math.isfinite(ts) or ts < self.last_tick + self.tick_every:
            return False
        self.last_tick = ts
        return True

    # ----------------------------------------------------------------- quiet input

    def advance(self, ts: float) -> None:
        """The driver has reached event time `ts` (only forward moves count)."""
        if ts > self.newest:
            self.newest = ts
            self._quiet_since = self.wall()

    def idle_time(self) -> float | None:
        """Event time moved on by the wall time the input has been quiet, once that is at
        least `idle_advance` (None before any event time, or while the input is not quiet):
        silence itself can be the incident, so holds expire and incidents resolve."""
        if self.newest == -math.inf:
            return None
        quiet_for = self.wall() - self._quiet_since
        if quiet_for < self.idle_advance:
            return None
        self.newest += quiet_for
        self._quiet_since = self.wall()
        return self.newest

    def reset(self) -> None:
        """Forget every partition and the cadence (a stage restart)."""
        self.partitions.clear()
        self._moved.clear()
        self.last_tick = -math.inf
