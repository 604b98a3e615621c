"""Ingest: turn raw Kafka message bytes into metric points and log records, or DLQ rejects.

Pure and synchronous. One message holds one JSON object or an array of them; each
object is validated on its own, so one bad item in a batch rejects only that item.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from pipeline.model import LogRecord, MetricPoint, SeriesKey, Signal
from pipeline.timeutil import parse_timestamp

StreamKind = Literal["metrics", "logs", "auto"]

#: Reasons a message or item is rejected; stable slugs, used as metric labels and DLQ headers.
REJECT_REASONS = (
    "too_large",
    "too_large_label",
    "not_utf8",
    "not_json",
    "not_object",
    "empty_batch",
    "empty_message",
    "missing_field",
    "wrong_type",
    "not_finite",
    "bad_timestamp",
    "unknown_signal",
    "bad_labels",
    "unknown_shape",
    "ts_out_of_range",
)

_LEVELS = {
    "trace",
    "debug",
    "info",
    "notice",
    "warn",
    "warning",
    "error",
    "err",
    "critical",
    "crit",
    "fatal",
    "alert",
    "emerg",
    "emergency",
}


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected message or batch item, with a stable reason and a human detail."""

    reason: str
    detail: str
    index: int | None = None


@dataclass(slots=True)
class Decoded:
    """What one message yielded: points, log records, and rejects (for the DLQ)."""

    points: list[MetricPoint] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ItemLimits:
    """Bounds on what one input item may carry, in UTF-8 bytes (`ingest:` in the config).

    Every series key is held in memory for as long as the series is tracked, written with its
    model to the detect changelog and repeated in each anomaly, so its size is what bounds
    per-series memory and keeps those records far under the producer's and a broker's
    limits. The defaults follow the limits hosted Prometheus back ends put on label sets.
    A log line is cut to `max_log_message_bytes`: its template, and the raw lines the miner
    remembers, would otherwise be as large as the message (a 900 KB line made a 1.8 MB log
    stage checkpoint).
    """

    max_name_bytes: int = 1024
    max_label_name_bytes: int = 1024
    max_label_value_bytes: int = 2048
    max_labels: int = 30
    max_series_key_bytes: int = 4096
    max_log_message_bytes: int = 4096


DEFAULT_LIMITS = ItemLimits()


#: An absent field, told apart from JSON null (`"value": null` is wrong_type, not missing).
_MISSING: Any = object()


class _ItemError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_message(
    raw: bytes,
    kind: StreamKind,
    max_bytes: int = 1_048_576,
    limits: ItemLimits = DEFAULT_LIMITS,
) -> Decoded:
    """Decode one message from the metrics or logs stream (or guess per item with `auto`).

    >>> d = decode_message(b'{"name":"up","value":1,"ts":10,"labels":{"service":"a"}}', "metrics")
    >>> d.points[0].series.id, d.points[0].value, d.rejects
    ('up{service="a"}', 1.0, [])
    >>> decode_message(b'{"name":"up"', "metrics").rejects[0].reason
    'not_json'
    """
    out = Decoded()
    if len(raw) > max_bytes:
        out.rejects.append(Reject("too_large", f"{len(raw)} bytes > limit {max_bytes}"))
        return out
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            out.rejects.append(Reject("not_utf8", "message is not valid UTF-8"))
            return out
        if _is_lenient_json(raw):
            out.rejects.append(Reject("not_finite", "NaN, Infinity or a number out of range"))
        else:
            out.rejects.append(Reject("not_json", str(exc)[:200]))
        return out
    if isinstance(document, dict):
        items: list[Any] = [document]
        indexed = False
    elif isinstance(document, list):
        if not document:
            out.rejects.append(Reject("empty_batch", "array holds no items"))
            return out
        items = document
        indexed = True
    else:
        out.rejects.append(Reject("not_object", f"top level is {type(document).__name__}"))
        return out
    keys = _SERIES_KEYS.get(limits)
    if keys is None:
        keys = _SERIES_KEYS[limits] = {}
    for position, item in enumerate(items):
        index = position if indexed else None
        try:
            if not isinstance(item, dict):
                raise _ItemError("not_object", f"item is {type(item).__name__}")
            item_kind = kind if kind != "auto" else _guess_kind(item)
            if item_kind == "metrics":
                out.points.append(_metric_point(item, limits, keys))
            else:
                out.logs.append(_log_record(item, limits))
        except _ItemError as exc:
            out.rejects.append(Reject(exc.reason, exc.detail, index))
    return out


def _is_lenient_json(raw: bytes) -> bool:
    """True when only NaN/Infinity or huge numbers kept strict JSON from parsing (error path).

    Python's parser is more lenient than that in other ways too (a byte-order mark, a lone
    surrogate escape): those are `not_json`, so the number hooks say what was lenient.

    >>> _is_lenient_json(b'{"v": NaN}'), _is_lenient_json(b'{"v": 1e999}')
    (True, True)
    """
    lenient = False

    def constant(name: str) -> float:  # NaN, Infinity, -Infinity
        nonlocal lenient
        lenient = True
        return 0.0

    def number(text: str) -> float:
        nonlocal lenient
        value = float(text)
        lenient = lenient or not math.isfinite(value)
        return value

    try:
        json.loads(raw.decode("utf-8"), parse_constant=constant, parse_float=number)
    except (ValueError, RecursionError):
        return False
    return lenient


def _guess_kind(item: Mapping[str, Any]) -> Literal["metrics", "logs"]:
    if "value" in item or "name" in item:
        return "metrics"
    if "message" in item or "log" in item or "msg" in item:
        return "logs"
    raise _ItemError("unknown_shape", "item is neither a metric point nor a log record")


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _shown(text: str) -> str:
    """The start of an oversized name, enough to find its sender in a DLQ detail."""
    return repr(text[:40] + "…" if len(text) > 40 else text)


def _labels(item: Mapping[str, Any], limits: ItemLimits, name: str = "") -> dict[str, str]:
    """The item's labels as strings, within `limits`; `name` (a metric's) counts towards the
    series key's size."""
    labels = item.get("labels", {})
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise _ItemError("bad_labels", f"labels is {type(labels).__name__}, not an object")
    if len(labels) > limits.max_labels:
        raise _ItemError("too_large_label", f"{len(labels)} labels > limit {limits.max_labels}")
    total = _utf8_len(name)
    if total > limits.max_name_bytes:
        raise _ItemError(
            "too_large_label",
            f"name {_shown(name)} is {total} bytes > limit {limits.max_name_bytes}",
        )
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not key:
            raise _ItemError("bad_labels", "empty label name")
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value = str(value)
        else:
            raise _ItemError("bad_labels", f"label {_shown(key)} is {type(value).__name__}")
        key_bytes = _utf8_len(key)
        if key_bytes > limits.max_label_name_bytes:
            raise _ItemError(
                "too_large_label",
                f"label name {_shown(key)} is {key_bytes} bytes "
                f"> limit {limits.max_label_name_bytes}",
            )
        value_bytes = _utf8_len(value)
        if value_bytes > limits.max_label_value_bytes:
            raise _ItemError(
                "too_large_label",
                f"label {_shown(key)} value is {value_bytes} bytes "
                f"> limit {limits.max_label_value_bytes}",
            )
        total += key_bytes + value_bytes
    if total > limits.max_series_key_bytes:
        raise _ItemError(
            "too_large_label",
            f"name and labels are {total} bytes > limit {limits.max_series_key_bytes}",
        )
    return out


#: Telemetry is stamped between 1970 and the end of 2999: event time, plus any window or
#: delay a config allows (at most ten years each), must stay within what a page can write.
TELEMETRY_TS_RANGE = (0.0, 32503680000.0)
_TS_LOW, _TS_HIGH = TELEMETRY_TS_RANGE


def _timestamp(item: Mapping[str, Any]) -> float:
    if "ts" not in item:
        raise _ItemError("missing_field", "ts")
    try:
        ts = parse_timestamp(item["ts"])
    except ValueError as exc:
        raise _ItemError("bad_timestamp", str(exc)) from None
    if not _TS_LOW <= ts < _TS_HIGH:
        raise _ItemError("bad_timestamp", f"timestamp {item['ts']!r} is not between 1970 and 2999")
    return ts


def _metric_point(
    item: Mapping[str, Any], limits: ItemLimits, keys: dict[_Received, SeriesKey]
) -> MetricPoint:
    name = item.get("name")
    if name is None:
        raise _ItemError("missing_field", "name")
    if not isinstance(name, str) or not name:
        raise _ItemError("wrong_type", "name must be a non-empty string")
    value = item.get("value", _MISSING)
    # Fast path first: orjson gives finite floats for nearly every value and timestamp; the
    # general checks below keep every reject reason and detail for the rest.
    if type(value) is not float or not math.isfinite(value):
        if value is _MISSING:
            raise _ItemError("missing_field", "value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _ItemError("wrong_type", f"value is {type(value).__name__}, not a number")
        value = float(value)
        if not math.isfinite(value):
            raise _ItemError("not_finite", f"value is {value}")
    ts = item.get("ts")
    if type(ts) is not float or not _TS_LOW <= ts < _TS_HIGH:  # (a NaN fails the range too)
        ts = _timestamp(item)
    signal_text = item.get("signal")
    signal: Signal | None = None
    if signal_text is not None:
        # What Signal(signal_text) accepts, without the cost of an Enum call per point.
        signal = _SIGNALS.get(signal_text) if isinstance(signal_text, str) else None
        if signal is None:
            raise _ItemError("unknown_signal", f"signal {signal_text!r}")
    return MetricPoint(_series_key(name, item, limits, keys), value, ts, signal)


_SIGNALS = {signal.value: signal for signal in Signal}


_Received = tuple[str, tuple[tuple[str, Any], ...]]

#: Series keys by metric name and labels as received (in the sender's order), one cache per
#: set of label limits (a key is only valid under the limits it was checked against). A
#: known series skips label validation, sorting and building its key, and all points of a
#: series share one key object, so the per-point dict and set lookups downstream match by
#: identity instead of comparing label tuples. Bounded: when full it is emptied and refills;
#: with keys of at most `max_series_key_bytes` that bounds its memory too.
_SERIES_KEYS: dict[ItemLimits, dict[_Received, SeriesKey]] = {}
_SERIES_KEYS_MAX = 200_000


def _series_key(
    name: str, item: Mapping[str, Any], limits: ItemLimits, keys: dict[_Received, SeriesKey]
) -> SeriesKey:
    labels = item.get("labels")
    received: tuple[tuple[str, Any], ...] | None = None
    if labels is None or isinstance(labels, dict):
        received = tuple(labels.items()) if labels else ()
        try:
            key = keys.get((name, received))
        except TypeError:  # a label value is an object or an array: rejected below
            received = None
        else:
            if key is not None:
                return key
    key = SeriesKey.of(name, _labels(item, limits, name))
    if len(keys) >= _SERIES_KEYS_MAX:
        keys.clear()
    # The sorted form is itself a way to send the labels: one key object for either order.
    key = keys.setdefault((name, key.labels), key)
    # Labels are cached as received only when all are strings: a hit then proves they are
    # valid again (no number equals a string), whereas 1, 1.0 and true are equal as dict
    # keys but are "1", "1.0" and bad_labels as labels.
    if received and all(type(value) is str for _, value in received):
        keys[(name, received)] = key
    return key


def _log_record(item: Mapping[str, Any], limits: ItemLimits) -> LogRecord:
    if "ts" not in item or "labels" not in item:
        item = adapt_log_shipper(item)
    message = item.get("message")
    if message is None:
        raise _ItemError("missing_field", "message")
    if not isinstance(message, str):
        raise _ItemError("wrong_type", f"message is {type(message).__name__}, not a string")
    cut = limits.max_log_message_bytes
    if len(message) > cut // 4 and _utf8_len(message) > cut:
        # The start of a line names its template; a character split by the cut is dropped.
        message = message.encode("utf-8", "surrogatepass")[:cut].decode("utf-8", "ignore")
    level = item.get("level", "info")
    if not isinstance(level, str):
        raise _ItemError("wrong_type", f"level is {type(level).__name__}, not a string")
    level = level.lower()
    if level not in _LEVELS:
        level = "info"
    ts = _timestamp(item)
    return LogRecord(ts, level, message, tuple(sorted(_labels(item, limits).items())))


#: Syslog severities (RFC 5424) by number, for shippers that send them as digits.
_SYSLOG_LEVELS = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")


def _first(item: Mapping[str, Any], *paths: str) -> Any:
    """The first present value among dotted paths (`kubernetes.labels.app`)."""
    for path in paths:
        node: Any = item
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return node
    return None


def adapt_log_shipper(item: Mapping[str, Any]) -> dict[str, Any]:
    """DESIGN.md's log shape from the JSON that Vector, Fluent Bit and rsyslog ship to Kafka.

    Vector: `message`, `timestamp`, `host`, often `service` or Kubernetes metadata. Fluent Bit:
    `log` (tail input) or `message`, `@timestamp` (epoch seconds or RFC 3339), `kubernetes`.
    rsyslog (omkafka with a JSON template): `msg` or `message`, `@timestamp` or `timereported`,
    `hostname`, `programname`, `severity` (a name or a number). Fields already in DESIGN.md's
    shape are kept.

    >>> adapt_log_shipper({"log": "boom", "@timestamp": 1.5, "level": "ERROR",
    ...                    "kubernetes": {"labels": {"app": "cart"}, "host": "n1"}})
    {'message': 'boom', 'ts': 1.5, 'level': 'ERROR', 'labels': {'service': 'cart', 'host': 'n1'}}
    """
    message = _first(item, "message", "log", "msg", "MESSAGE")
    ts = _first(item, "ts", "timestamp", "@timestamp", "time", "timereported", "date")
    level = _first(item, "level", "severity", "log.level", "syslog.severity", "levelname")
    if isinstance(level, int) and not isinstance(level, bool) and 0 <= level < 8:
        level = _SYSLOG_LEVELS[level]
    labels = item.get("labels")
    if not isinstance(labels, dict):
        labels = {}
        service = _first(
            item,
            "service",
            "service.name",
            "kubernetes.labels.app",
            "kubernetes.labels.app.kubernetes.io/name",
            "kubernetes.container_name",
            "programname",
            "app",
            "appname",
        )
        host = _first(item, "host", "hostname", "kubernetes.host", "host.name")
        for name, value in (("service", service), ("host", host)):
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                labels[name] = str(value)
    out: dict[str, Any] = {"message": message, "ts": ts, "level": level, "labels": labels}
    return {key: value for key, value in out.items() if value is not None}


#: A DLQ record (value, key and headers) stays under this many bytes: under a broker's default
#: `message.max.bytes` (1 MB and a few bytes, record batch included) and the producer's
#: smallest `max_request_size` (1 MiB), whatever `kafka.max_message_bytes` lets in.
DLQ_MAX_RECORD_BYTES = 1_000_000
#: Of the source record's key, a DLQ record keeps at most this much.
DLQ_MAX_KEY_BYTES = 1024
# Room for the record batch's and each record's and header's own framing (varints, CRC).
_DLQ_FRAMING = 4096


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A DLQ record ready to produce: a prefix of the rejected bytes, and headers saying why
    and from where, with the original size when the value or key was cut."""

    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(
    reject: Reject,
    value: bytes,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
) -> DeadLetter:
    """The DLQ record for a rejected input: the original bytes, or as much of their start as
    keeps the record under `DLQ_MAX_RECORD_BYTES` (`qp.truncated: true`, `qp.size`: the
    original value's size in bytes).

    >>> letter = dead_letter(Reject("too_large", "3 MB"), b"x" * 3_000_000, None, "t", 0, 7)
    >>> len(letter.value) < 1_000_000, dict(letter.headers)["qp.size"]
    (True, b'3000000')
    """
    headers = dlq_headers(reject, topic, partition, offset)
    cut = False
    if key is not None and len(key) > DLQ_MAX_KEY_BYTES:
        key, cut = key[:DLQ_MAX_KEY_BYTES], True
    room = DLQ_MAX_RECORD_BYTES - _DLQ_FRAMING - len(key or b"")
    room -= sum(len(name) + len(text) for name, text in headers)
    room -= 64  # the two headers below
    if len(value) > room:
        cut = True
    if cut:
        headers.append(("qp.truncated", b"true"))
        headers.append(("qp.size", str(len(value)).encode()))
    return DeadLetter(value[:room], key, headers)


def dlq_headers(reject: Reject, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers that explain a DLQ record; its value stays the original bytes."""
    headers = [
        ("qp.reason", reject.reason.encode()),
        ("qp.detail", reject.detail.encode("utf-8", "replace")[:1000]),
        ("qp.topic", topic.encode()[:1000]),
        ("qp.partition", str(partition).encode()),
        ("qp.offset", str(offset).encode()),
    ]
    if reject.index is not None:
        headers.append(("qp.index", str(reject.index).encode()))
    return headers
