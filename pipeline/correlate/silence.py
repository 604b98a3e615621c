"""Alertmanager-style silences: label matchers and time windows that mute matching alerts.

A silence mutes an alert when it is active (`starts_at <= now < ends_at`, half-open so that
`ends_at` is the first moment alerts page again) and every one of its matchers matches the
alert's labels. Matchers follow Alertmanager: `=`, `!=`, `=~`, `!~`; regular expressions are
RE2 (pipeline.userregex: Go's syntax, linear time), fully anchored, and a label the alert does
not carry matches as the empty string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.labels import MATCH_OPS, Matcher, MatchOp, parse_matcher
from pipeline.model import Anomaly
from pipeline.silence_limits import (
    MAX_COMMENT_CHARS,
    MAX_CREATED_BY_CHARS,
    MAX_MATCHERS,
)

if TYPE_CHECKING:
    from pipeline.config import Silence

#: Matchers live in `pipeline.labels` (shared with the config); re-exported here as before.
__all__ = [
    "MATCH_OPS",
    "MatchOp",
    "Matcher",
    "SilenceRule",
    "Silencer",
    "anomaly_labels",
    "parse_matcher",
]


@dataclass(frozen=True, slots=True)
class SilenceRule:
    """A silence: matchers that must all match, during the window `[starts_at, ends_at)`."""

    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    comment: str = ""
    id: str = ""
    created_by: str = ""
    updated_at: float = 0.0  # when it was last written (the API's `updatedAt`)

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if len(self.matchers) > MAX_MATCHERS:
            raise ValueError(f"a silence has at most {MAX_MATCHERS} matchers")
        if len(self.comment) > MAX_COMMENT_CHARS:
            raise ValueError(f"a comment has at most {MAX_COMMENT_CHARS} characters")
        if len(self.created_by) > MAX_CREATED_BY_CHARS:
            raise ValueError(f"createdBy has at most {MAX_CREATED_BY_CHARS} characters")
        if all(m.matches({}) for m in self.matchers):
            # As Alertmanager: matchers that all match a missing label would mute every alert.
            raise ValueError(
                "at least one matcher must not match the empty string "
                "(as given, the silence would mute every alert)"
            )
        if self.ends_at <= self.starts_at:
            raise ValueError("a silence's ends_at must be after its starts_at")

    def active(self, now: float) -> bool:
        """Whether the silence is in force at event time `now`."""
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        """Whether the silence mutes an alert with `labels` at event time `now`."""
        return self.active(now) and all(m.matches(labels) for m in self.matchers)


class Silencer:
    """All configured silences; answers which one, if any, mutes an alert."""

    def __init__(self, rules: Iterable[SilenceRule] = ()) -> None:
        # By id, in the order added (a replaced one moves to the end); a rule without an id
        # gets a key of its own. Keyed so that loading N silences costs N, not N squared.
        self._by_id: dict[str, SilenceRule] = {}
        self._anonymous = 0
        self._rules: tuple[SilenceRule, ...] | None = None  # built when first asked for
        for rule in rules:
            self._add(rule)

    @property
    def rules(self) -> tuple[SilenceRule, ...]:
        """Every silence, in the order added."""
        if self._rules is None:
            self._rules = tuple(self._by_id.values())
        return self._rules

    def _add(self, rule: SilenceRule) -> None:
        key = rule.id
        if not key:
            self._anonymous += 1
            key = f"\0{self._anonymous}"
        self._by_id.pop(key, None)
        self._by_id[key] = rule
        self._rules = None

    def upsert(self, rule: SilenceRule) -> None:
        """Add a silence, or replace the one with the same id (the API's create and expire)."""
        self._add(rule)

    def remove(self, silence_id: str) -> bool:
        """Drop a silence by id; False when there was none."""
        removed = self._by_id.pop(silence_id, None) is not None if silence_id else False
        if removed:
            self._rules = None
        return removed

    def get(self, silence_id: str) -> SilenceRule | None:
        """The silence with this id, or None."""
        return self._by_id.get(silence_id) if silence_id else None

    def mutes(self, labels: Mapping[str, str], now: float) -> SilenceRule | None:
        """The first silence active at `now` that mutes `labels`, or None."""
        for rule in self.rules:
            if rule.mutes(labels, now):
                return rule
        return None

    @classmethod
    def from_config(cls, silences: Sequence[Silence]) -> Silencer:
        """Silences from the config; each gets the id `silence-<index>` for logs and counts."""
        return cls(
            SilenceRule(
                matchers=tuple(parse_matcher(text) for text in silence.matchers),
                starts_at=silence.starts_at,
                ends_at=silence.ends_at,
                comment=silence.comment,
                id=f"silence-{index}",
                created_by=silence.created_by,
            )
            for index, silence in enumerate(silences)
        )

    def __repr__(self) -> str:
        return f"Silencer({len(self.rules)} rules)"


def anomaly_labels(anomaly: Anomaly) -> dict[str, str]:
    """The labels silences match an anomaly against.

    The series labels, plus `__name__` (the metric name), `service` and `signal` from the
    anomaly itself, and `name` (the metric name) unless the series has a label of that name.

    >>> from pipeline.model import SeriesKey, Signal
    >>> a = Anomaly(0.0, SeriesKey.of("up", {"region": "eu"}), "checkout", Signal.ERRORS,
    ...             1.0, 0.0, 0.999, 0.99)
    >>> sorted(anomaly_labels(a).items())  # doctest: +NORMALIZE_WHITESPACE
    [('__name__', 'up'), ('name', 'up'), ('region', 'eu'), ('service', 'checkout'),
     ('signal', 'errors')]
    """
    labels = {"name": anomaly.series.name}
    labels.update(anomaly.series.labels)
    labels["__name__"] = anomaly.series.name
    labels["service"] = anomaly.service
    labels["signal"] = anomaly.signal.value
    return labels
