"""Storm protection: at most `max_pages` new pages per `window` for one set of receivers.

When many unrelated incidents become due at once (a shared dependency nobody put in the
topology, a network partition), paging each of them buries the on-call. Beyond the cap a
trigger waits: its incident stays open and is named in the digest of the next page that goes
out, and it pages later if it is still anomalous once the window has room.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any


class StormGuard:
    """A sliding-window count of triggers per routing key (the receivers a page goes to).

    >>> g = StormGuard(max_pages=2, window=600.0)
    >>> [g.allows(("oncall",), t) and g.record(("oncall",), t) is None for t in (0, 1, 2)]
    [True, True, False]
    >>> g.allows(("oncall",), 600.0)
    True
    """

    def __init__(self, max_pages: int, window: float) -> None:
        self.max_pages = max_pages
        self.window = window
        self._sent: dict[tuple[str, ...], deque[float]] = {}

    def allows(self, key: tuple[str, ...], now: float) -> bool:
        """Whether one more trigger to `key` fits in the window ending at `now` (0 = no cap)."""
        if self.max_pages <= 0:
            return True
        sent = self._sent.get(key)
        if sent is None:
            return True
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        if not sent:
            del self._sent[key]
            return True
        return len(sent) < self.max_pages

    def record(self, key: tuple[str, ...], now: float) -> None:
        """Count a trigger sent to `key` at `now`."""
        if self.max_pages > 0:
            self._sent.setdefault(key, deque()).append(now)

    def snapshot(self) -> list[dict[str, Any]]:
        """The counted triggers as JSON-able data."""
        return [{"receivers": list(key), "sent": list(sent)} for key, sent in self._sent.items()]

    def restore(self, items: Iterable[Mapping[str, Any]]) -> None:
        """Replace the counts with a `snapshot()`."""
        self._sent = {
            tuple(str(r) for r in item["receivers"]): deque(float(t) for t in item["sent"])
            for item in items
        }
