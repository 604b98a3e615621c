"""Decoding telemetry messages: good shapes pass, every bad shape is rejected with its reason."""

from __future__ import annotations

import math

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest import (
    DLQ_MAX_RECORD_BYTES,
    REJECT_REASONS,
    ItemLimits,
    Reject,
    dead_letter,
    decode_message,
    dlq_headers,
)
from pipeline.model import Signal

GOOD = {
    "name": "http_request_duration_seconds",
    "value": 0.231,
    "ts": 1764147600.0,
    "labels": {"service": "checkout", "region": "eu-west-1"},
    "signal": "latency",
}


def test_design_example_decodes() -> None:
    decoded = decode_message(orjson.dumps(GOOD), "metrics")
    assert decoded.rejects == []
    (point,) = decoded.points
    assert point.value == 0.231
    assert point.ts == 1764147600.0
    assert point.signal is Signal.LATENCY
    assert point.series.id == (
        'http_request_duration_seconds{region="eu-west-1",service="checkout"}'
    )


def test_batch_keeps_good_items_and_rejects_bad_ones_by_index() -> None:
    batch = [GOOD, {**GOOD, "value": "x"}, {**GOOD, "ts": "yesterday"}]
    decoded = decode_message(orjson.dumps(batch), "metrics")
    assert len(decoded.points) == 1
    assert [(r.reason, r.index) for r in decoded.rejects] == [
        ("wrong_type", 1),
        ("bad_timestamp", 2),
    ]


def test_log_record_design_example() -> None:
    record = {
        "ts": "2026-11-26T09:00:00Z",
        "level": "ERROR",
        "message": "upstream timeout after 3000 ms",
        "labels": {"service": "checkout", "host": "node-7"},
    }
    decoded = decode_message(orjson.dumps(record), "logs")
    (log,) = decoded.logs
    assert log.level == "error"
    assert log.ts == 1795683600.0
    assert dict(log.labels) == {"host": "node-7", "service": "checkout"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not_json"),  # plain text
        (b'{"name": "x", "value": 1', "not_json"),  # truncated
        (b"\xff\xfe\x00garbage", "not_utf8"),  # binary junk
        (b"42", "not_object"),  # a bare number
        (b"[]", "empty_batch"),  # an empty array
        (b"[1]", "not_object"),  # an array of non-objects
        (b'{"value": 1, "ts": 1}', "missing_field"),  # no name
        (b'{"name": "x", "ts": 1}', "missing_field"),  # no value
        (b'{"name": "x", "value": 1}', "missing_field"),  # no ts
        (b'{"name": "", "value": 1, "ts": 1}', "wrong_type"),  # empty name
        (b'{"name": "x", "value": true, "ts": 1}', "wrong_type"),  # boolean value
        (b'{"name": "x", "value": null, "ts": 1}', "wrong_type"),  # null value
        (b'{"name": "x", "value": 1e999, "ts": 1}', "not_finite"),  # overflow to infinity
        (b'{"name": "x", "value": NaN, "ts": 1}', "not_finite"),  # NaN literal
        (b'{"name": "x", "value": -Infinity, "ts": 1}', "not_finite"),  # infinity literal
        (b'\xef\xbb\xbf{"name": "x", "value": 1, "ts": 1}', "not_json"),  # a byte-order mark
        (b'{"name": "\\ud800", "value": 1, "ts": 1}', "not_json"),  # a lone surrogate
        (b'{"name": "x", "value": 1, "ts": "2026-13-40"}', "bad_timestamp"),  # impossible date
        (b'{"name": "x", "value": 1, "ts": "2026-11-26T09:00:00"}', "bad_timestamp"),  # no zone
        (b'{"name": "x", "value": 1, "ts": 1e12}', "bad_timestamp"),  # year 33658: pages crashed
        (b'{"name": "x", "value": 1, "ts": -1}', "bad_timestamp"),  # before 1970
        (b'{"name": "x", "value": 1, "ts": 32503680000}', "bad_timestamp"),  # the year 3000
        (b'{"name": "x", "value": 1, "ts": "9999-12-31T00:00:00Z"}', "bad_timestamp"),  # too late
        (b'{"name": "x", "value": 1, "ts": 1e17}', "bad_timestamp"),  # beyond datetime
        (b'{"name": "x", "value": 1, "ts": 1, "signal": "vibes"}', "unknown_signal"),  # bad signal
        (b'{"name": "x", "value": 1, "ts": 1, "signal": "LATENCY"}', "unknown_signal"),  # a name
        (b'{"name": "x", "value": 1, "ts": 1, "signal": 5}', "unknown_signal"),  # not a string
        (b'{"name": "x", "value": 1, "ts": 1, "signal": ["errors"]}', "unknown_signal"),  # array
        (b'{"name": "x", "value": 1, "ts": 1, "labels": [1]}', "bad_labels"),  # labels not a map
        (b'{"name": "x", "value": 1, "ts": 1, "labels": {"a": {}}}', "bad_labels"),  # nested
    ],
)
def test_rejects_metrics(raw: bytes, reason: str) -> None:
    decoded = decode_message(raw, "metrics")
    assert decoded.points == []
    assert [r.reason for r in decoded.rejects] == [reason]


@pytest.mark.parametrize("signal", list(Signal))
def test_every_signal_decodes_to_its_member(signal: Signal) -> None:
    raw = orjson.dumps({"name": "x", "value": 1, "ts": 1, "signal": signal.value})
    assert decode_message(raw, "metrics").points[0].signal is signal


def _labels_of(*labels: object) -> list[str]:
    """Each label set, decoded in turn: its series id, or its reject reason."""
    out = []
    for x in labels:
        decoded = decode_message(
            orjson.dumps({"name": "up", "value": 1, "ts": 1, "labels": x}), "metrics"
        )
        out.extend([p.series.id for p in decoded.points] + [r.reason for r in decoded.rejects])
    return out


def test_a_known_series_shares_one_key_object_in_any_label_order() -> None:
    raw = orjson.dumps(
        [
            {"name": "up", "value": 1, "ts": 1, "labels": {"b": "2", "a": "1"}},
            {"name": "up", "value": 1, "ts": 2, "labels": {"a": "1", "b": "2"}},
            {"name": "up", "value": 1, "ts": 3, "labels": {"b": "2", "a": "1"}},
        ]
    )
    first, second, third = (p.series for p in decode_message(raw, "metrics").points)
    assert first is second is third


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # a number is its text, but a cached string label must not let a boolean through
        (({"v": "1"}, {"v": 1}, {"v": True}), ['up{v="1"}', 'up{v="1"}', "bad_labels"]),
        # 1 and 1.0 are one dict key but two label values
        (({"v": 1}, {"v": 1.0}), ['up{v="1"}', 'up{v="1.0"}']),
        # a known series name with a nested value or an empty label name is still rejected
        (({"v": "x"}, {"v": {}}, {"v": ["x"]}), ['up{v="x"}', "bad_labels", "bad_labels"]),
        (({"v": "x"}, {"v": "x", "": "y"}), ['up{v="x"}', "bad_labels"]),
        # no labels, null labels and an empty object are the same series
        (({}, None), ["up", "up"]),
    ],
)
def test_label_validation_is_the_same_for_known_series(
    labels: tuple[object, ...], expected: list[str]
) -> None:
    assert _labels_of(*labels) == expected
    assert _labels_of(*labels) == expected  # again, with every series known


def test_oversized_message_is_rejected_before_parsing() -> None:
    decoded = decode_message(b"[" + b"1," * 600 + b"1]", "metrics", max_bytes=1024)
    assert [r.reason for r in decoded.rejects] == ["too_large"]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"ts": 1}, "missing_field"),  # no message
        ({"ts": 1, "message": 5}, "wrong_type"),  # message not a string
        ({"message": "x"}, "missing_field"),  # no ts
    ],
)
def test_rejects_logs(item: dict[str, object], reason: str) -> None:
    assert [r.reason for r in decode_message(orjson.dumps(item), "logs").rejects] == [reason]


def test_auto_kind_tells_points_from_logs() -> None:
    raw = orjson.dumps([GOOD, {"ts": 1, "message": "hello"}, {"ts": 1}])
    decoded = decode_message(raw, "auto")
    assert (len(decoded.points), len(decoded.logs)) == (1, 1)
    assert [r.reason for r in decoded.rejects] == ["unknown_shape"]


def test_dlq_headers_carry_source_coordinates() -> None:
    decoded = decode_message(b"nope", "metrics")
    headers = dict(dlq_headers(decoded.rejects[0], "telemetry.metrics", 2, 41))
    assert headers["qp.reason"] == b"not_json"
    assert headers["qp.topic"] == b"telemetry.metrics"
    assert (headers["qp.partition"], headers["qp.offset"]) == (b"2", b"41")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_without_raising(raw: bytes) -> None:
    decoded = decode_message(raw, "auto")
    for reject in decoded.rejects:
        assert reject.reason in REJECT_REASONS
    for point in decoded.points:
        assert math.isfinite(point.value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "value", "ts", "labels", "signal", "message"]), json_values
    )
)
def test_any_json_object_is_either_a_point_or_a_reasoned_reject(item: dict[str, object]) -> None:
    decoded = decode_message(orjson.dumps(item), "metrics")
    assert len(decoded.points) + len(decoded.rejects) == 1
    for reject in decoded.rejects:
        assert reject.reason in REJECT_REASONS


@pytest.mark.parametrize(
    ("shipped", "level", "message", "labels"),
    [
        # Vector's kafka sink, JSON codec: message, timestamp, host, a service field
        (
            {
                "message": "upstream timeout",
                "timestamp": "2026-11-26T09:00:00Z",
                "host": "node-7",
                "service": "checkout",
                "source_type": "file",
                "level": "warn",
            },
            "warn",
            "upstream timeout",
            {"host": "node-7", "service": "checkout"},
        ),
        # Fluent Bit's kafka output: `log` from the tail input, @timestamp in epoch seconds,
        # Kubernetes metadata
        (
            {
                "@timestamp": 1795683600.0,
                "log": "connection refused",
                "kubernetes": {
                    "labels": {"app": "payments"},
                    "host": "node-2",
                    "container_name": "app",
                },
            },
            "info",
            "connection refused",
            {"host": "node-2", "service": "payments"},
        ),
        # rsyslog omkafka with a JSON template: msg, timereported, hostname, programname and a
        # numeric syslog severity (3 = error)
        (
            {
                "msg": "disk full",
                "timereported": "2026-11-26T09:00:00+00:00",
                "hostname": "db-1",
                "programname": "postgres",
                "severity": 3,
            },
            "error",
            "disk full",
            {"host": "db-1", "service": "postgres"},
        ),
    ],
)
def test_log_shipper_json_is_adapted(
    shipped: dict[str, object], level: str, message: str, labels: dict[str, str]
) -> None:
    decoded = decode_message(orjson.dumps(shipped), "logs")
    assert decoded.rejects == []
    (record,) = decoded.logs
    assert (record.ts, record.level, record.message) == (1795683600.0, level, message)
    assert dict(record.labels) == labels


def test_auto_kind_recognises_shipper_logs() -> None:
    decoded = decode_message(orjson.dumps({"log": "x", "@timestamp": 1.0}), "auto")
    assert [r.message for r in decoded.logs] == ["x"]


SMALL = ItemLimits(
    max_name_bytes=8,
    max_label_name_bytes=7,
    max_label_value_bytes=6,
    max_labels=3,
    max_series_key_bytes=21,
)


@pytest.mark.parametrize(
    ("name", "labels", "reason"),
    [
        # every bound met exactly: 8 + (7 + 6) = 21 bytes
        ("abcdefgh", {"abcdefg": "uvwxyz"}, None),
        # a name one byte too long
        ("abcdefghi", {}, "too_large_label"),
        # a label name one byte too long
        ("up", {"abcdefgh": "v"}, "too_large_label"),
        # a label value one byte too long
        ("up", {"a": "uvwxyzq"}, "too_large_label"),
        # bytes, not characters: six characters, twelve bytes in UTF-8
        ("up", {"a": "éééééé"}, "too_large_label"),
        # a number as a label value is measured as the text it becomes
        ("up", {"a": 1234567}, "too_large_label"),
        # one label too many
        ("up", {"a": "1", "b": "2", "c": "3", "d": "4"}, "too_large_label"),
        # each part within its bound, the whole key over 21 bytes (2 + 3 x (4 + 3) = 23)
        ("up", {"aaaa": "123", "bbbb": "123", "cccc": "123"}, "too_large_label"),
        # a wrong type is still bad_labels, not a size problem
        ("up", {"a": [1]}, "bad_labels"),
    ],
)
def test_label_limits(name: str, labels: dict[str, object], reason: str | None) -> None:
    item = {"name": name, "value": 1, "ts": 1, "labels": labels}
    for _ in range(2):  # again, with the series known to the key cache
        decoded = decode_message(orjson.dumps(item), "metrics", limits=SMALL)
        assert [r.reason for r in decoded.rejects] == ([reason] if reason else [])


def test_a_key_accepted_under_loose_limits_is_checked_again_under_strict_ones() -> None:
    raw = orjson.dumps({"name": "up", "value": 1, "ts": 1, "labels": {"a": "uvwxyzq"}})
    assert decode_message(raw, "metrics").rejects == []
    assert [r.reason for r in decode_message(raw, "metrics", limits=SMALL).rejects] == [
        "too_large_label"
    ]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        # DESIGN.md's shape with a label value over the bound
        ({"ts": 1, "message": "m", "labels": {"service": "x" * 7}}, "too_large_label"),
        # a shipper's service field becomes the service label, and is bounded too
        ({"log": "m", "@timestamp": 1, "service": "x" * 7}, "too_large_label"),
        # within the bounds
        ({"ts": 1, "message": "m", "labels": {"service": "x" * 6}}, None),
    ],
)
def test_log_record_labels_are_bounded(item: dict[str, object], reason: str | None) -> None:
    decoded = decode_message(orjson.dumps(item), "logs", limits=SMALL)
    assert [r.reason for r in decoded.rejects] == ([reason] if reason else [])


def test_a_one_megabyte_label_is_rejected_with_the_default_limits() -> None:
    raw = orjson.dumps({"name": "up", "value": 1, "ts": 1, "labels": {"blob": "x" * 1_000_000}})
    decoded = decode_message(raw, "metrics")
    assert [r.reason for r in decoded.rejects] == ["too_large_label"]
    assert len(decoded.rejects[0].detail) < 200  # the detail names the label, not its value


@pytest.mark.parametrize(
    ("size", "key", "truncated"),
    [
        # small: kept whole, no size header
        (100, b"k", False),
        # just within the record bound once headers are counted
        (990_000, None, False),
        # a 3 MB message rejected as too_large: its start is kept
        (3_000_000, None, True),
        # a huge key is cut too, and the value still fits
        (999_000, b"k" * 500_000, True),
    ],
)
def test_a_dead_letter_never_exceeds_the_record_bound(
    size: int, key: bytes | None, truncated: bool
) -> None:
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    letter = dead_letter(Reject("too_large", "d" * 5000, 3), value, key, "t" * 249, 5, 10**12)
    record = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        letter.key, letter.value, letter.headers
    )
    assert record <= DLQ_MAX_RECORD_BYTES
    assert value.startswith(letter.value)
    headers = dict(letter.headers)
    assert ("qp.truncated" in headers) is truncated
    if truncated:
        assert headers["qp.truncated"] == b"true"
        assert headers["qp.size"] == str(size).encode()
    else:
        assert letter.value == value


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        # within the bound: kept whole
        ("x" * 64, "x" * 64),
        # at the bound exactly
        ("x" * 100, "x" * 100),
        # one byte over: cut to the bound
        ("y" * 101, "y" * 100),
        # a two-byte character split by the cut is dropped, not mangled
        ("a" + "é" * 60, "a" + "é" * 49),
    ],
)
def test_a_long_log_line_is_cut_to_its_start(message: str, kept: str) -> None:
    limits = ItemLimits(max_log_message_bytes=100)
    item = {"ts": 1, "message": message, "labels": {"service": "web"}}
    decoded = decode_message(orjson.dumps(item), "logs", limits=limits)
    assert decoded.rejects == []
    assert decoded.logs[0].message == kept
