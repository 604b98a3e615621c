"""Detect: one online model per series, scored before learned; anomalies above a threshold.

Pure and synchronous: event time comes with each point. Keyed state is bounded by
`max_series` (least recently seen evicted first) and by `series_ttl` of event time.

Event time is a robust watermark (`pipeline.watermark.EventClock`) over the (scope, service)
sources, not the largest timestamp seen (the live worker passes each point its partition's
watermark over record keys instead, `observe(point, now)`): a point stamped more than
`max_lead` ahead of it, from a source the others do not follow, neither moves it nor blinds its
own series. Such a point is
still scored and learned; an anomaly it raises carries the watermark as its time, so the
correlator's clock does not jump. When that source's clock comes back, its series' next
point is older than their last: where the last was ahead of the present and the new point is
not, the point is a clock correction (counted in `DetectStats.clock_corrections`), not
out-of-order, and the series goes on from it.

Absence: silence can be the incident. Each service's usual reporting interval is learned
(an EW mean of the gaps between its distinct timestamps); `absences(now)` returns a traffic
anomaly, series `quietpager_series_absent`, for every service not heard from for
`ABSENCE_INTERVALS` of its intervals, once per call, so drivers call it at each tick.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, KeysView, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from detectors import SeriesDetector
from detectors.compiled import CompiledLikelihood, compiled_layout, detector_for_signal, warm_up
from detectors.golden import GoldenSignalDetector, golden_for_signal
from pipeline.codec import (
    MAX_RECORD_BYTES,
    RecordRejected,
    decode,
    encode,
    pack_float,
    pack_floats,
    reading,
    unpack_bool,
    unpack_float,
    unpack_floats,
    unpack_str,
)
from pipeline.config import DetectConfig, SignalRule
from pipeline.model import ABSENCE_SERIES, Anomaly, MetricPoint, SeriesKey, Signal
from pipeline.userregex import UserRegex
from pipeline.watermark import DEFAULT_MAX_LEAD, EventClock

DetectorFactory = Callable[[Signal], SeriesDetector]
RejectHandler = Callable[[RecordRejected], None]


def series_model(config: DetectConfig, signal: Signal) -> SeriesDetector:
    """A fresh model for one series of `signal`, as `config.model` says (the stage's default).

    >>> type(series_model(DetectConfig(), Signal.LATENCY)).__name__
    'CompiledLikelihood'
    >>> type(series_model(DetectConfig(model="golden"), Signal.LATENCY)).__name__
    'GoldenSignalDetector'
    """
    make = detector_for_signal if config.model == "likelihood" else golden_for_signal
    return make(signal.value, ceiling=config.saturation_ceiling, warmup=config.warmup_points)


class SignalClassifier:
    """Decides a series' golden signal: the point's own `signal`, else the first matching rule."""

    def __init__(self, rules: list[SignalRule]) -> None:
        self.rules = rules
        # RE2, fully anchored: a rule's pattern from the config runs on every new series' name.
        self._compiled = [(UserRegex(rule.name_matches), rule) for rule in rules]

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

    detector: SeriesDetector
    signal: Signal
    service: str
    scope: str
    last_ts: float
    # Whether the series' last point was emitted as an anomaly: an event in progress, which
    # goes on emitting while its detector says the event continues.
    in_event: bool = False


#: The schema of a checkpointed series (`export_series`): bump it whenever a model changes
#: shape. A checkpoint of another schema, or of another model than `detect.model` makes, is
#: not restored: its series starts a fresh model (counted in `DetectStats`). 9: the codec's
#: explicit fields replace pickle.
STATE_VERSION: Final = 9
_SERIES_KIND: Final = "series"


def encode_series(key: SeriesKey, state: SeriesState) -> bytes:
    """One series' checkpoint record: its key, where it belongs and its model's numbers."""
    body: dict[str, object] = {
        "name": key.name,
        "labels": [list(pair) for pair in key.labels],
        "signal": state.signal.value,
        "service": state.service,
        "scope": state.scope,
        "last_ts": pack_float(state.last_ts),
        "in_event": state.in_event,
    }
    detector = state.detector
    if isinstance(detector, CompiledLikelihood):
        settings, values = detector.export_state()
        body["model"] = "compiled"
        body["settings"] = [[name, value] for name, value in settings]
        body["state"] = pack_floats(values)
    elif isinstance(detector, GoldenSignalDetector):
        golden, numbers, warm = detector.export_state()
        body["model"] = "golden"
        body["settings"] = [[name, value] for name, value in golden.items()]
        body["state"] = [pack_float(x) for x in numbers]
        body["warm"] = None if warm is None else [pack_float(x) for x in warm]
    else:
        # A test's or a bench's own model: it has no checkpoint form, and a wrong one would
        # restore as garbage, so it is refused by name.
        raise RecordRejected("wrong_kind", f"no checkpoint form for {type(detector).__name__}")
    return encode(_SERIES_KIND, STATE_VERSION, body)


def _settings(value: object) -> list[tuple[str, object]]:
    """A model's keyword settings: [name, scalar] pairs (the model validates the values)."""
    if not isinstance(value, list):
        raise ValueError("settings must be a list")
    out: list[tuple[str, object]] = []
    for name, setting in value:
        if not isinstance(setting, (str, int, float, type(None))):
            raise ValueError(f"setting {name!r} is no scalar")
        out.append((unpack_str(name), setting))
    return sorted(out)


def decode_series(blob: bytes) -> tuple[SeriesKey, SeriesState]:
    """Inverse of `encode_series`; raises `RecordRejected` with the reason."""
    body = decode(blob, _SERIES_KIND, STATE_VERSION)
    with reading(_SERIES_KIND):
        labels = tuple((unpack_str(k), unpack_str(v)) for k, v in body["labels"])
        key = SeriesKey(unpack_str(body["name"]), labels)
        settings = _settings(body["settings"])
        model = body["model"]
        detector: SeriesDetector
        if model == "compiled":
            size = compiled_layout(**dict(settings))[1]
            detector = CompiledLikelihood.from_state(
                tuple(settings), unpack_floats(body["state"], size)
            )
        elif model == "golden":
            warm = body["warm"]
            detector = GoldenSignalDetector.from_state(
                dict(settings),
                [unpack_float(x) for x in body["state"]],
                None if warm is None else [unpack_float(x) for x in warm],
            )
        else:
            raise RecordRejected("version", f"unknown model {model!r}")
        state = SeriesState(
            detector,
            Signal(body["signal"]),
            unpack_str(body["service"]),
            unpack_str(body["scope"]),
            unpack_float(body["last_ts"]),
            unpack_bool(body["in_event"]),
        )
    return key, state


#: A service is absent after this many of its usual intervals without a point.
ABSENCE_INTERVALS: Final = 3.0
#: Gaps a service must show before its absence can be judged (no guess from one gap).
ABSENCE_MIN_GAPS: Final = 5
_INTERVAL_ALPHA: Final = 0.2


@dataclass(slots=True)
class ServiceClock:
    """When a service last reported and how often it usually does, for absence detection."""

    scope: str
    last_ts: float
    interval: float = 0.0
    gaps: int = 0

    def heard(self, ts: float) -> None:
        """A point of the service at `ts`; a new timestamp updates the usual interval."""
        if ts <= self.last_ts:
            return
        gap = ts - self.last_ts
        self.interval = (
            gap if self.gaps == 0 else self.interval + _INTERVAL_ALPHA * (gap - self.interval)
        )
        self.gaps += 1
        self.last_ts = ts


@dataclass(slots=True)
class DetectStats:
    """Counters the shell exports on /metrics."""

    points: int = 0
    anomalies: int = 0
    continued: int = 0  # of the anomalies, those emitted because an event continued
    absences: int = 0
    out_of_order: int = 0
    # Points older than their series' last, taken because that last was stamped ahead of the
    # present by a clock since corrected (not out-of-order: skipping them would blind it).
    clock_corrections: int = 0
    evicted: dict[str, int] = field(default_factory=lambda: {"ttl": 0, "lru": 0})
    # Checkpointed series not restored: another layout or model (they start afresh).
    state_dropped: int = 0


class DetectStage:
    """Scores each point against its series' model, then learns it."""

    def __init__(
        self,
        config: DetectConfig,
        factory: DetectorFactory | None = None,
        max_lead: float | None = None,
    ) -> None:
        """`max_lead`: how far ahead of event time a point may be and still move it
        (`Config.max_lead`; the config's `detect.max_lead` or the default when None)."""
        self.config = config
        self.classifier = SignalClassifier(config.signal_rules)
        self._factory = factory or partial(series_model, config)
        if factory is None and config.model == "likelihood":
            warm_up()  # compile the model's kernel before the first point, not on it
        self._series: OrderedDict[SeriesKey, SeriesState] = OrderedDict()
        self.stats = DetectStats()
        lead = max_lead if max_lead is not None else config.max_lead or DEFAULT_MAX_LEAD
        self.clock = EventClock(lead)
        self._next_ttl_sweep = float("-inf")
        # (scope, service) -> its clock, least recently heard first; bounded like the series.
        self._services: OrderedDict[tuple[str, str], ServiceClock] = OrderedDict()

    @property
    def watermark(self) -> float:
        """Event time: the robust watermark of the points seen (-inf before any)."""
        return self.clock.watermark

    @property
    def series_keys(self) -> KeysView[SeriesKey]:
        """The series that hold a model now (a live view)."""
        return self._series.keys()

    @property
    def series_tracked(self) -> int:
        """How many series hold a model now."""
        return len(self._series)

    def observe(self, point: MetricPoint, now: float | None = None) -> Anomaly | None:
        """Score then learn one point; return an Anomaly when the score crosses its threshold.

        `now`: the event time of the point's input, when the caller keeps it (the live worker:
        its partition's watermark over the agents writing to it, after the point's record);
        when None the stage's own watermark over (scope, service) sources is it (`replay`).
        """
        self.stats.points += 1
        state = self._series.get(point.series)
        clock = self.clock
        before = clock.watermark
        if now is None:
            source = (state.scope, state.service) if state is not None else self._source(point)
            clock.observe(source, point.ts, len(self._services))
            now = clock.watermark
        else:
            clock.advance_to(now)
        if now > before:
            self._sweep_ttl(now)
            if state is not None and point.series not in self._series:
                state = None  # swept: it starts afresh, as a series unseen for the TTL does
        present = now + clock.max_lead
        if state is None:
            state = self._admit(point, self._source(point))
        else:
            if point.ts <= state.last_ts:
                if not state.last_ts > present >= point.ts:
                    # Out-of-order or duplicated points would teach the model twice; skip them.
                    self.stats.out_of_order += 1
                    return None
                self.stats.clock_corrections += 1
            self._series.move_to_end(point.series)
        state.last_ts = point.ts
        # A point ahead of the present happened now, as far as anyone downstream can tell.
        ts = point.ts if point.ts <= present else now
        self._heard(state, ts, present)
        detector = state.detector
        expected = detector.expected
        score, going_on = detector.step(point.value, point.ts)
        threshold = self.config.thresholds[state.signal]
        # A detector mutes its score after an alarm so that one event alarms once; the
        # correlator still needs to see the event persist (hold) and end (resolve), so an
        # emitted event keeps emitting, at the threshold, while the detector says it continues.
        if score < threshold and state.in_event and going_on:
            score = threshold
            self.stats.continued += 1
        state.in_event = score >= threshold
        if not state.in_event:
            return None
        self.stats.anomalies += 1
        return Anomaly(
            ts=ts,
            series=point.series,
            service=state.service,
            signal=state.signal,
            value=point.value,
            expected=expected,
            score=score,
            threshold=threshold,
            scope=state.scope,
        )

    def _heard(self, state: SeriesState, ts: float, present: float) -> None:
        key = (state.scope, state.service)
        clock = self._services.get(key)
        if clock is None:
            self._services[key] = ServiceClock(state.scope, ts)
            while len(self._services) > self.config.max_series:
                self._services.popitem(last=False)
            return
        if ts > clock.last_ts:
            clock.heard(ts)
            self._services.move_to_end(key)
        elif clock.last_ts > present:
            # Its clock ran ahead and is back: it was heard now, not in that future.
            clock.last_ts = ts
            self._services.move_to_end(key)

    def absences(self, now: float) -> list[Anomaly]:
        """A traffic anomaly for each service silent for `ABSENCE_INTERVALS` usual intervals.

        Services are walked least recently heard first; the walk stops at the first one heard
        within the last `tick_every`, as a driver asks no more often than that.
        """
        out: list[Anomaly] = []
        threshold = self.config.thresholds[Signal.TRAFFIC]
        label = self.config.service_label
        for (scope, service), clock in self._services.items():
            silent = now - clock.last_ts
            if silent <= self.config.tick_every:
                break
            if clock.gaps < ABSENCE_MIN_GAPS or silent <= ABSENCE_INTERVALS * clock.interval:
                continue
            labels = {label: service}
            if self.config.scope_label:
                labels[self.config.scope_label] = scope
            out.append(
                Anomaly(
                    ts=now,
                    series=SeriesKey.of(ABSENCE_SERIES, labels),
                    service=service,
                    signal=Signal.TRAFFIC,
                    value=silent,
                    expected=clock.interval,
                    score=1.0,
                    threshold=threshold,
                    scope=scope,
                    detail={"absent_for_s": silent, "usual_interval_s": clock.interval},
                )
            )
        self.stats.absences += len(out)
        return out

    def observe_time(self, labels: Mapping[str, str], ts: float) -> None:
        """Let a record that is not a metric point (a log line) move event time, by the
        points' robust rule (`pipeline.watermark`), its (scope, service) the source."""
        clock = self.clock
        before = clock.watermark
        clock.observe(self._source_of(labels), ts, len(self._services))
        if clock.watermark > before:
            self._sweep_ttl(clock.watermark)

    def _source(self, point: MetricPoint) -> tuple[str, str]:
        """(scope, service) of a point's series: who stamps it, for the watermark."""
        return self._source_of(point.series.label_map())

    def _source_of(self, labels: Mapping[str, str]) -> tuple[str, str]:
        # An empty label names nothing: it counts as absent (a page read ": latency ...").
        service = labels.get(self.config.service_label) or "unknown"
        scope_label = self.config.scope_label
        scope = (labels.get(scope_label) if scope_label else None) or "default"
        return scope, service

    def _admit(self, point: MetricPoint, source: tuple[str, str]) -> SeriesState:
        signal = self.classifier.classify(point)
        scope, service = source
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
        # A service silent for the whole TTL is forgotten with its series: it stops paging.
        while self._services:
            service_key, clock = next(iter(self._services.items()))
            if clock.last_ts >= horizon:
                break
            del self._services[service_key]

    def export_series(
        self, keys: Iterable[SeriesKey], on_reject: RejectHandler | None = None
    ) -> dict[str, bytes]:
        """Checkpoint records (`pipeline.codec`, kind `series`) of the given series, by id.

        A series whose record would exceed the codec's limit (a key with huge labels) is left
        out and reported to `on_reject`: its last good record, if any, stays in the changelog.
        """
        out: dict[str, bytes] = {}
        for key in keys:
            state = self._series.get(key)
            if state is None:
                continue
            try:
                blob = encode_series(key, state)
                # The key travels with the record, and the broker counts both.
                if len(blob) + len(key.id.encode()) > MAX_RECORD_BYTES:
                    raise RecordRejected("too_large", f"series record and key of {key.id[:80]}")
                out[key.id] = blob
            except RecordRejected as exc:
                if on_reject is not None:
                    on_reject(exc)
        return out

    def import_series(
        self, items: Iterable[bytes], on_reject: RejectHandler | None = None
    ) -> list[SeriesKey]:
        """Restore series from `export_series` values (a newer live state is kept).

        A record that does not decode is skipped and reported to `on_reject` with its reason;
        nothing in it is run or instantiated by name (see `pipeline.codec`). Such a record, a
        checkpoint of another schema, or one holding another model than this stage's factory
        makes (`detect.model` changed), is counted in `stats.state_dropped`: its series starts
        a fresh model, where restoring it would fail on its first point or score wrongly.
        """
        restored: list[SeriesKey] = []
        expected_models: dict[Signal, type] = {}
        for blob in items:
            try:
                key, state = decode_series(blob)
                model = expected_models.get(state.signal)
                if model is None:
                    model = expected_models[state.signal] = type(self._factory(state.signal))
                if type(state.detector) is not model:
                    raise RecordRejected(
                        "version", f"a {type(state.detector).__name__} model, not {model.__name__}"
                    )
            except RecordRejected as exc:
                self.stats.state_dropped += 1
                if on_reject is not None:
                    on_reject(exc)
                continue
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
            state = self._series.pop(key, None)
            if state is not None:
                # Its service now reports elsewhere; judging its absence here would page.
                self._services.pop((state.scope, state.service), None)

    def bytes_per_series(self, sample: int = 50) -> float:
        """Mean checkpoint size of up to `sample` tracked models (0 when none), less their keys."""
        states = list(self._series.values())[:sample]
        if not states:
            return 0.0
        key = SeriesKey("x")
        return sum(len(encode_series(key, s)) for s in states) / len(states)
