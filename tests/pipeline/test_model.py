"""Data shapes: series keys hash once, and unpickle with this process's hash."""

from __future__ import annotations

import pickle
import subprocess
import sys

from pipeline.model import Anomaly, SeriesKey, Signal


def test_series_key_identity_ignores_label_order() -> None:
    a = SeriesKey.of("up", {"b": "2", "a": "1"})
    b = SeriesKey.of("up", {"a": "1", "b": "2"})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a.id == 'up{a="1",b="2"}'


def test_series_key_from_another_process_finds_its_entry() -> None:
    # String hashes are salted per process: a pickled key must be rehashed on load, or
    # restored detector state would never be found again.
    code = (
        "import pickle, sys; from pipeline.model import SeriesKey; "
        "sys.stdout.buffer.write(pickle.dumps(SeriesKey.of('up', {'service': 'a'})))"
    )
    blob = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": "."},
    ).stdout
    key = pickle.loads(blob)
    assert {SeriesKey.of("up", {"service": "a"}): 1}.get(key) == 1


def test_anomaly_round_trips_through_its_dict() -> None:
    anomaly = Anomaly(
        1.0,
        SeriesKey.of("up", {"service": "a"}),
        "a",
        Signal.ERRORS,
        2.0,
        1.0,
        0.999,
        0.99,
        detail={"kind": "x"},
    )
    again = Anomaly.from_dict(anomaly.to_dict())
    assert again == anomaly
    assert again.detail == {"kind": "x"}
