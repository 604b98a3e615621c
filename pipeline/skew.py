"""Which input partitions to hold back so that no input runs far ahead of another in event time.

Kafka orders records within a partition only. When one input has a backlog (a topic that was
written while the worker was down, a producer that caught up in a burst) and another does
not, the detect stage would read the caught-up one minutes ahead in event time, and the
anomalies it raises would move the correlator's clock past the ones the backlogged input is
still to raise: those would arrive older than `resolve_after` and be dropped as `stale`. So
the detect stage pauses a partition whose newest event time leads the slowest *backlogged*
partition by more than `worker.max_skew`, and resumes it once that one has caught up (or has
no backlog left). A partition without a backlog never holds the others back: a quiet source
must not stop the rest (that is `worker.idle_advance`'s job for ticks).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping
from typing import TypeVar

__all__ = ["held_partitions"]

K = TypeVar("K", bound=Hashable)


def held_partitions(
    newest: Mapping[K, float | None], backlogged: Collection[K], max_skew: float
) -> frozenset[K]:
    """The partitions to pause: those whose newest event time is more than `max_skew` ahead
    of the slowest backlogged partition's.

    `newest` maps each assigned partition to the newest event time read from it (None: none
    read yet); `backlogged` are the partitions with a backlog to read (the detect stage:
    more records left than one fetch returns). A backlogged
    partition with no time yet counts as the slowest of all, since its first records may be
    the oldest; a partition with no time is never held.

    >>> held_partitions({"metrics": 1000.0, "logs": 100.0}, {"logs"}, 60.0)
    frozenset({'metrics'})
    >>> held_partitions({"metrics": 1000.0, "logs": 100.0}, set(), 60.0)
    frozenset()
    """
    if max_skew < 0 or math.isnan(max_skew):
        raise ValueError(f"max_skew must be >= 0, got {max_skew}")
    if not backlogged:
        return frozenset()
    times = [newest.get(tp) for tp in backlogged]
    floor = min(-math.inf if ts is None else ts for ts in times)
    return frozenset(tp for tp, ts in newest.items() if ts is not None and ts > floor + max_skew)
