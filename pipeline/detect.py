"""Detect: one online model per series, scored before learned; anomalies above a threshold.

Pure and synchronous: event time comes with each point. Keyed state is bounded by
`max_series` (least recently seen evicted first) and by `series_ttl` of event time.
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from detectors.golden import GoldenSignalDetector, detector_for_signal, series_nbytes
from pipeline.config import DetectConfig, SignalRule
from pipeline.model import Anomaly, MetricPoint, SeriesKey, Signal

DetectorFactory = Callable[[Signal], GoldenSignalDetector]


class SignalClassifier:
    """Decides a series' golden signal: the point's own `signal`, else the first matching rule."""

    def __init__(self, rules: list[SignalRule]) -> None:
        self.rules = rules
        self._compiled = [(re.compile(rule.name_matches), rule) for rule in rules]

    def classify(self, point: MetricPoint) -> Signal:
        """The signal of the point's series; `generic` when nothing claims it.

        >>> from pipeline.config import DetectConfig
        >>> c = SignalClassifier(DetectConfig().signal_rules)
        >>> c.classify(MetricPoint(SeriesKey.of("http_request_duration_seconds"), 0.2, 0.0))
        <Signal.LATENCY: 'latency'>
        >>> c.classify(MetricPoint(SeriesKey.of("temperature"), 20.0, 0.0))
        <Signal.GENERIC: 'generic'>
        """
        if point.signal is not None:
            return point.signal
        labels = point.series.label_map()
        for pattern, rule in self._compiled:
            if pattern.fullmatch(point.series.name) and all(
                labels.get(k) == v for k, v in rule.labels.items()
            ):
                return rule.signal
        return Signal.GENERIC


@dataclass(slots=True)
class SeriesState:
    """What detect keeps per series: its model and where it belongs."""

    detector: GoldenSignalDetector
    signal: Signal
    service: str
    scope: str
    last_ts: float


@dataclass(slots=True)
class DetectStats:
    """Counters the shell exports on /metrics."""

    points: int = 0
    anomalies: int = 0
    out_of_order: int = 0
    evicted: dict[str, int] = field(default_factory=lambda: {"ttl": 0, "lru": 0})


class DetectStage:
    """Scores each point against its series' model, then learns it."""

    def __init__(self, config: DetectConfig, factory: DetectorFactory | None = None) -> None:
        self.config = config
        self.classifier = SignalClassifier(config.signal_rules)
        self._factory = factory or self._default_factory
        self._series: OrderedDict[SeriesKey, SeriesState] = OrderedDict()
        self.stats = DetectStats()
        self.watermark = float("-inf")
        self._next_ttl_sweep = float("-inf")

    def _default_factory(self, signal: Signal) -> GoldenSignalDetector:
        return detector_for_signal(
            signal.value, ceiling=self.config.saturation_ceiling, warmup=self.config.warmup_points
        )

    @property
    def series_tracked(self) -> int:
        """How many series hold a model now."""
        return len(self._series)

    def observe(self, point: MetricPoint) -> Anomaly | None:
        """Score then learn one point; return an Anomaly when the score crosses its threshold."""
        self.stats.points += 1
        if point.ts > self.watermark:
            self.watermark = point.ts
            self._sweep_ttl(point.ts)
        state = self._series.get(point.series)
        if state is None:
            state = self._admit(point)
        else:
            if point.ts <= state.last_ts:
                # Out-of-order or duplicated points would teach the model twice; skip them.
                self.stats.out_of_order += 1
                return None
            self._series.move_to_end(point.series)
        state.last_ts = point.ts
        detector = state.detector
        score = detector.score_one(point.value)
        expected = detector.expected
        detector.learn_one(point.value)
        threshold = self.config.thresholds[state.signal]
        if score < threshold:
            return None
        self.stats.anomalies += 1
        return Anomaly(
            ts=point.ts,
            series=point.series,
            service=state.service,
            signal=state.signal,
            value=point.value,
            expected=expected,
            score=score,
            threshold=threshold,
            scope=state.scope,
        )

    def _admit(self, point: MetricPoint) -> SeriesState:
        signal = self.classifier.classify(point)
        labels = point.series.label_map()
        service = labels.get(self.config.service_label, "unknown")
        scope_label = self.config.scope_label
        scope = labels.get(scope_label, "default") if scope_label else "default"
        state = SeriesState(self._factory(signal), signal, service, scope, float("-inf"))
        self._series[point.series] = state
        while len(self._series) > self.config.max_series:
            self._series.popitem(last=False)
            self.stats.evicted["lru"] += 1
        return state

    def _sweep_ttl(self, now: float) -> None:
        # A sweep walks from the least recently seen end, so it stops at the first live series.
        if now < self._next_ttl_sweep:
            return
        self._next_ttl_sweep = now + min(self.config.series_ttl, 60.0)
        horizon = now - self.config.series_ttl
        while self._series:
            key, state = next(iter(self._series.items()))
            if state.last_ts >= horizon:
                break
            del self._series[key]
            self.stats.evicted["ttl"] += 1

    def export_series(self, keys: Iterable[SeriesKey]) -> dict[str, bytes]:
        """Checkpoint form of the given series' state (pickled), by series id."""
        out: dict[str, bytes] = {}
        for key in keys:
            state = self._series.get(key)
            if state is not None:
                out[key.id] = pickle.dumps((key, state), pickle.HIGHEST_PROTOCOL)
        return out

    def import_series(self, items: Iterable[bytes]) -> list[SeriesKey]:
        """Restore series from `export_series` values (a newer live state is kept)."""
        restored: list[SeriesKey] = []
        for blob in items:
            # Only quietpager writes its changelog topics (see pipeline/state.py).
            key, state = pickle.loads(blob)
            current = self._series.get(key)
            if current is not None and current.last_ts >= state.last_ts:
                continue
            self._series[key] = state
            self._series.move_to_end(key)
            restored.append(key)
        while len(self._series) > self.config.max_series:
            self._series.popitem(last=False)
            self.stats.evicted["lru"] += 1
        return restored

    def drop_series(self, keys: Iterable[SeriesKey]) -> None:
        """Forget series that now belong to another worker."""
        for key in keys:
            self._series.pop(key, None)

    def bytes_per_series(self, sample: int = 50) -> float:
        """Mean serialized size of up to `sample` tracked models (0 when none)."""
        states = list(self._series.values())[:sample]
        if not states:
            return 0.0
        return sum(series_nbytes(s.detector) for s in states) / len(states)
