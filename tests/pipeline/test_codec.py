"""The state codec: exact round trips, and records that are rejected without running anything."""

from __future__ import annotations

import pickle
import random
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from detectors.compiled import CompiledLikelihood
from detectors.golden import GoldenSignalDetector
from pipeline.codec import MAGIC, MAX_RECORD_BYTES, RecordRejected, decode, encode
from pipeline.config import DetectConfig
from pipeline.detect import STATE_VERSION, DetectStage, SeriesState, decode_series, encode_series
from pipeline.model import Page, SeriesKey, Signal
from pipeline.silences import rule_from_record, rule_to_record
from pipeline.state import write_state
from tests.fakes import FakeProducer


class _Trap:
    """A pickle that creates a file when it is loaded, as an attacker's record would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def _series_record(**changes: object) -> bytes:
    """A valid series record with some body fields replaced."""
    key = SeriesKey.of("latency", {"service": "a"})
    state = SeriesState(CompiledLikelihood(direction="up"), Signal.LATENCY, "a", "default", 1.0)
    body = decode(encode_series(key, state), "series", STATE_VERSION) | changes
    return encode("series", STATE_VERSION, body)


def _steps(detector: object, values: list[float]) -> list[tuple[float, bool]]:
    step = detector.step  # type: ignore[attr-defined]
    return [step(x, 300.0 * i) for i, x in enumerate(values)]


@pytest.mark.parametrize(
    ("make", "learned"),
    [
        (lambda: CompiledLikelihood(direction="up"), 0),  # fresh: NaN and infinities in state
        (lambda: CompiledLikelihood(direction="both", ceiling=2.0, warmup=5), 400),
        (lambda: GoldenSignalDetector(direction="up", warmup=30), 10),  # inside its warm-up
        (lambda: GoldenSignalDetector(direction="both", ceiling=5.0), 400),
    ],
)
def test_a_restored_model_scores_identically(make: object, learned: int) -> None:
    rng = random.Random(learned + 1)
    values = [rng.gauss(1.0, 0.1) for _ in range(learned)]
    original = make()  # type: ignore[operator]
    _steps(original, values)
    key = SeriesKey.of("latency", {"service": "a", "pod": "p-1"})
    state = SeriesState(original, Signal.SATURATION, "a", "eu", float("-inf"), in_event=True)
    restored_key, restored = decode_series(encode_series(key, state))
    assert restored_key == key
    assert hash(restored_key) == hash(key)
    assert (restored.signal, restored.service, restored.scope) == (Signal.SATURATION, "a", "eu")
    assert restored.last_ts == float("-inf")
    assert restored.in_event
    later = [rng.gauss(1.0, 0.1) for _ in range(300)] + [9.0, float("nan"), 1.0]
    assert _steps(restored.detector, later) == _steps(original, later)


def test_a_malicious_pickle_runs_nothing_and_is_rejected(tmp_path: Path) -> None:
    trap = tmp_path / "pwned"
    blob = pickle.dumps(_Trap(trap))
    pickle.loads(blob)  # the trap works when unpickled ...
    assert trap.exists()
    trap.unlink()
    stage = DetectStage(DetectConfig())
    rejected: list[RecordRejected] = []
    assert stage.import_series([blob, MAGIC + blob], rejected.append) == []
    assert not trap.exists()  # ... and the stage never unpickles it
    assert [r.reason for r in rejected] == ["not_a_record", "malformed"]


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "not_a_record"),  # empty
        (b'{"kind": "series"}', "not_a_record"),  # JSON without the header
        (_series_record()[:-20], "malformed"),  # truncated
        (MAGIC + b"[1, 2]", "malformed"),  # no body
        (MAGIC + b"[" * 5000 + b"]" * 5000, "malformed"),  # nested past the parser's depth
        (encode("incident", STATE_VERSION, {}), "wrong_kind"),  # another topic's record
        (encode("series", STATE_VERSION - 1, {}), "version"),  # an older schema
        (MAGIC + b" " * MAX_RECORD_BYTES, "too_large"),  # over the limit
        (_series_record(last_ts="later"), "malformed"),  # a float that is none
        (_series_record(in_event=1), "malformed"),  # not a boolean
        (_series_record(labels=[["service", 7]]), "malformed"),  # a label that is no string
        (_series_record(signal="bogus"), "malformed"),  # no such signal
        (_series_record(model="pickle"), "version"),  # no such model
        (_series_record(settings=[["__class__", "os.system"]]), "malformed"),  # no such setting
        (_series_record(settings=[["warmup", [1]]]), "malformed"),  # a setting that is no scalar
        (_series_record(settings=[["warmup", 0]]), "malformed"),  # a value the model refuses
        (_series_record(state="AAAA"), "malformed"),  # an array of the wrong length
        (_series_record(state="not base64!"), "malformed"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(blob: bytes, reason: str) -> None:
    with pytest.raises(RecordRejected) as caught:
        decode_series(blob)
    assert caught.value.reason == reason


def test_a_record_over_the_limit_is_refused_when_written() -> None:
    # Half the limit: the record alone would fit, the record with its key would not.
    huge = SeriesKey.of("latency", {"service": "a", "blob": "x" * (MAX_RECORD_BYTES // 2)})
    stage = DetectStage(DetectConfig())
    stage._series[huge] = SeriesState(CompiledLikelihood(), Signal.LATENCY, "a", "default", 1.0)
    rejected: list[RecordRejected] = []
    assert stage.export_series([huge], rejected.append) == {}
    assert [r.reason for r in rejected] == ["too_large"]


def test_records_are_json_after_the_header() -> None:
    data = orjson.loads(_series_record()[len(MAGIC) :])
    assert (data["kind"], data["v"], data["body"]["model"]) == ("series", STATE_VERSION, "compiled")


def test_doctests() -> None:
    import doctest

    import pipeline.codec

    result = doctest.testmod(pipeline.codec)
    assert result.attempted > 0
    assert result.failed == 0


def _silence(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "v": 1,
        "id": "s-1",
        "matchers": ['service="db"'],
        "starts_at": 1_795_683_600.0,
        "ends_at": 1_795_690_800.0,
        "comment": "maintenance",
        "created_by": "ops",
        "updated_at": 1_795_683_600.0,
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not _DROP}


_DROP = object()


@pytest.mark.parametrize(
    ("record", "ok"),
    [
        (_silence(), True),  # as written now
        (_silence(v=_DROP), True),  # written before the schema field
        (_silence(v=2), False),  # a schema this version does not know
        (_silence(starts_at="soon"), False),  # a time that is no number
        (_silence(ends_at=True), False),  # a bool is no time
        (_silence(matchers='service="db"'), False),  # matchers must be a list
        (_silence(matchers=[7]), False),  # a matcher must be text
        (_silence(comment="x" * 5000), False),  # over the API's comment bound
        (_silence(id=_DROP), False),  # no id
    ],
)
def test_silence_records_have_explicit_checked_fields(record: dict[str, object], ok: bool) -> None:
    if ok:
        rule = rule_from_record(record)
        assert rule_from_record(rule_to_record(rule)) == rule
    else:
        with pytest.raises(ValueError, match="silence record"):
            rule_from_record(record)


def _page(**changes: object) -> Page:
    page = Page(
        action="trigger",
        dedup_key="qp-1",
        at=1_795_683_600.0,
        summary="checkout: latency anomalous",
        severity="critical",
        source="quietpager",
        root_service="checkout",
        scope="default",
        signals=("latency",),
        receivers=("am",),
        custom_details={"services": ["checkout"]},
    )
    return replace(page, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"v": 2}, ValueError),  # a schema this version does not know
        ({"action": "explode"}, ValueError),  # no such action
        ({"at": "now"}, ValueError),  # a time that is no number
        ({"dedup_key": 7}, ValueError),  # a key that is no text
        ({"receivers": "am"}, TypeError),  # receivers must be a list
        ({"custom_details": [1]}, TypeError),  # details must be an object
    ],
)
def test_outbox_records_have_explicit_checked_fields(
    changes: dict[str, object], error: type[Exception]
) -> None:
    assert Page.from_dict(orjson.loads(_page().record())) == _page()
    with pytest.raises(error):
        Page.from_dict(orjson.loads(_page().record()) | changes)


def test_a_page_with_huge_details_still_fits_one_record() -> None:
    many = [f"service-{i}-" + "x" * 500 for i in range(5000)]
    page = _page(custom_details={"services": many, "incident_id": "qp-1"})
    blob = page.record()
    assert len(orjson.dumps(page.to_dict())) > MAX_RECORD_BYTES
    assert len(blob) <= MAX_RECORD_BYTES
    sent = Page.from_dict(orjson.loads(blob))
    assert (sent.dedup_key, sent.action, sent.receivers) == ("qp-1", "trigger", ("am",))
    assert sent.custom_details["truncated"] is True
    assert sent.custom_details["services"] == many[:20]
    huge_scope = _page(scope="s" * 2 * MAX_RECORD_BYTES)
    assert len(huge_scope.record()) <= MAX_RECORD_BYTES


async def test_write_state_never_sends_an_item_over_the_limit() -> None:
    producer = FakeProducer()
    items: dict[bytes, bytes | None] = {
        b"p:0|big": b"x" * MAX_RECORD_BYTES,
        b"p:0|small": b"x",
        b"p:0|gone": None,
    }
    await write_state(producer, "state", items)
    assert [sent["key"] for sent in producer.raw] == [b"p:0|small", b"p:0|gone"]
