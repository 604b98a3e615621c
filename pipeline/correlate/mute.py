"""Muters: each answers "does this mute it, and why?"; one `MuteStage` asks them in order.

In the spirit of Alertmanager's `Muter` (implemented by silences and inhibition alike, so one
stage handles both and counts by reason). An anomaly goes past `StaleMuter` (a redelivery, or a
late anomaly of what already resolved), `SilenceMuter` (an active silence) and `FlapMuter` (a
flapping series: it still folds in, but never holds its incident to a page); a due trigger goes
past `StormMuter` (the storm cap of its receivers). The first that mutes answers; the ones
after it are not asked, so a silenced anomaly leaves no trace in the flap history.

A `Muted` carries the decision it turns into (kind and reason from
`pipeline.correlate.decisions`) and the detail that explains it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pipeline.correlate.decisions import FLAPPING, SILENCED, STALE, STORM_CAPPED, DecisionKind
from pipeline.correlate.flap import FlapDetector
from pipeline.correlate.silence import Silencer, anomaly_labels
from pipeline.correlate.storm import StormGuard
from pipeline.model import Anomaly

SubjectT = TypeVar("SubjectT", contravariant=True)
Subject = TypeVar("Subject")


@dataclass(frozen=True, slots=True)
class Muted:
    """Why a muter muted something: the decision it becomes and what explains it."""

    kind: DecisionKind
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


class Muter(Protocol[SubjectT]):
    """Anything that may mute a subject (an anomaly, a trigger's receivers) at event time."""

    def mutes(self, subject: SubjectT, now: float) -> Muted | None:
        """Why `subject` is muted at `now`, or None when it is not."""
        ...


class MuteStage(Generic[Subject]):
    """Asks its muters in order; the first that mutes answers, counted under its reason.

    >>> guard = StormGuard(max_pages=1, window=60.0)
    >>> stage = MuteStage([StormMuter(guard)])
    >>> guard.record(("oncall",), 0.0)
    >>> stage.mutes(("oncall",), 30.0).reason, stage.mutes(("oncall",), 60.0)
    ('storm_capped', None)
    >>> stage.muted
    {'storm_capped': 1}
    """

    def __init__(
        self, muters: Sequence[Muter[Subject]], muted: dict[str, int] | None = None
    ) -> None:
        self.muters = tuple(muters)
        # Shared between stages when given, so one count by reason covers them all.
        self.muted: dict[str, int] = {} if muted is None else muted

    def mutes(self, subject: Subject, now: float) -> Muted | None:
        """The first muter's answer for `subject` at `now`, or None when none mutes it."""
        for muter in self.muters:
            muted = muter.mutes(subject, now)
            if muted is not None:
                self.muted[muted.reason] = self.muted.get(muted.reason, 0) + 1
                return muted
        return None


class StaleMuter:
    """Mutes an anomaly too old to keep any incident open: older than `now - resolve_after`
    (a redelivery after a crash, a badly lagging source), or than the close of its series'
    incident that paged (folding it would reopen what already resolved).
    """

    def __init__(self, resolve_after: float) -> None:
        self.resolve_after = resolve_after
        # series id -> when its paged incident closed, for `resolve_after` after that (not
        # snapshotted: after a restart a late anomaly may reopen, as before).
        self.closed: dict[str, float] = {}
        self._order: list[tuple[float, str]] = []  # (close time, series id), a heap

    def mutes(self, anomaly: Anomaly, now: float) -> Muted | None:
        """`stale` when the anomaly is older than `now - resolve_after` or its series' close."""
        closed = self.closed.get(anomaly.series.id)
        if anomaly.ts <= now - self.resolve_after or (closed is not None and anomaly.ts < closed):
            return Muted("suppress", STALE)
        return None

    def close(self, series_ids: Iterable[str], now: float) -> None:
        """Remember that the paged incident of `series_ids` closed at `now`."""
        for series_id in series_ids:
            self.closed[series_id] = max(now, self.closed.get(series_id, now))
            heapq.heappush(self._order, (now, series_id))

    def forget(self, now: float) -> None:
        """Drop the closes over `resolve_after` ago: the age rule covers their anomalies."""
        order, horizon = self._order, now - self.resolve_after
        while order and order[0][0] <= horizon:
            closed_at, series_id = heapq.heappop(order)
            if self.closed.get(series_id) == closed_at:
                del self.closed[series_id]

    def clear(self) -> None:
        """Forget every close (a restore starts without them)."""
        self.closed, self._order = {}, []


class SilenceMuter:
    """Mutes an anomaly whose labels (see `anomaly_labels`) match a silence active at its time."""

    def __init__(self, silencer: Silencer) -> None:
        self.silencer = silencer

    def mutes(self, anomaly: Anomaly, now: float) -> Muted | None:
        """`silenced`, with the silence's id and comment, when one is active at `anomaly.ts`."""
        rule = self.silencer.mutes(anomaly_labels(anomaly), anomaly.ts)
        if rule is None:
            return None
        return Muted("suppress", SILENCED, {"silence_id": rule.id, "comment": rule.comment})

    def __repr__(self) -> str:
        return f"SilenceMuter({self.silencer!r})"


class FlapMuter:
    """Mutes the hold of a flapping series: its anomaly still folds in, but cannot page.

    Asking records the anomaly in the flap history (`FlapDetector.observe`), so ask once per
    anomaly that got this far.
    """

    def __init__(self, flaps: FlapDetector) -> None:
        self.flaps = flaps

    def mutes(self, anomaly: Anomaly, now: float) -> Muted | None:
        """`flapping`, with the series' flap percent, when its series is flapping now."""
        series_id = anomaly.series.id
        if not self.flaps.observe(series_id, anomaly.ts):
            return None
        return Muted("fold", FLAPPING, {"flap_percent": self.flaps.percent(series_id, anomaly.ts)})


class StormMuter:
    """Mutes a trigger to a set of receivers that has had its `storm_max_pages` this window."""

    def __init__(self, guard: StormGuard) -> None:
        self.guard = guard

    def mutes(self, receivers: tuple[str, ...], now: float) -> Muted | None:
        """`storm_capped`, naming the receivers, when the cap leaves no room at `now`."""
        if self.guard.allows(receivers, now):
            return None
        return Muted("suppress", STORM_CAPPED, {"receivers": list(receivers)})
