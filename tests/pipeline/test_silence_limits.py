"""Silences are bounded and parsed in linear time, from the API, the topic and the config."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from pipeline.config import load_config
from pipeline.correlate.silence import Matcher, SilenceRule, parse_matcher
from pipeline.errors import ConfigError
from pipeline.metrics import Metrics
from pipeline.ops import MAX_BODY_BYTES, OpsServer
from pipeline.silence_limits import (
    MAX_COMMENT_CHARS,
    MAX_CREATED_BY_CHARS,
    MAX_MATCHER_TEXT_CHARS,
    MAX_MATCHERS,
    MAX_NAME_CHARS,
    MAX_VALUE_CHARS,
)
from pipeline.silences import (
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    SilenceError,
    SilenceStore,
    rule_from_api,
    rule_to_record,
)
from tests.conftest import TopicNames
from tests.fakes import FakeProducer

NOW = 1_795_683_600.0  # 2026-11-26T09:00:00Z
ENDS = "2026-11-26T10:00:00Z"


def test_the_matcher_parser_is_linear() -> None:
    # 100,000 spaces took 42 s to parse (a lazy `(.*?)\s*$` over the whole text); the length
    # is now refused before any parsing, and the longest text allowed parses at once.
    began = time.perf_counter()
    with pytest.raises(ValueError, match=f"longer than {MAX_MATCHER_TEXT_CHARS} characters"):
        parse_matcher("service=a" + " " * 100_000 + "b")
    longest = "service=" + " " * (MAX_MATCHER_TEXT_CHARS - 10) + "a"
    assert parse_matcher(longest) == Matcher("service", "=", "a")
    spaces_inside = "service=a" + " " * (MAX_VALUE_CHARS - 2) + "b"
    assert parse_matcher(spaces_inside).value == "a" + " " * (MAX_VALUE_CHARS - 2) + "b"
    assert time.perf_counter() - began < 0.1


def _body(**fields: Any) -> dict[str, Any]:
    return {"matchers": ["service=db"], "endsAt": ENDS} | fields


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # one matcher too many
        (_body(matchers=["service=db"] * (MAX_MATCHERS + 1)), f"at most {MAX_MATCHERS} matchers"),
        # a label name over its limit, as an object and as text
        (
            _body(matchers=[{"name": "n" * (MAX_NAME_CHARS + 1), "value": "x"}]),
            f"matchers[0]: label name longer than {MAX_NAME_CHARS}",
        ),
        (_body(matchers=["n" * (MAX_NAME_CHARS + 1) + "=x"]), "label name longer than"),
        # a value (or regex) over its limit
        (
            _body(matchers=[{"name": "s", "value": "v" * (MAX_VALUE_CHARS + 1)}]),
            f"matchers[0]: value longer than {MAX_VALUE_CHARS}",
        ),
        # a matcher text over its limit (the 100,000 spaces)
        (
            _body(matchers=["service=a" + " " * 100_000]),
            f"matchers[0]: a matcher's text has at most {MAX_MATCHER_TEXT_CHARS}",
        ),
        # the comment, createdBy and id limits
        (
            _body(comment="c" * (MAX_COMMENT_CHARS + 1)),
            f"comment: a string of at most {MAX_COMMENT_CHARS}",
        ),
        (
            _body(createdBy="c" * (MAX_CREATED_BY_CHARS + 1)),
            f"createdBy: a string of at most {MAX_CREATED_BY_CHARS}",
        ),
        (_body(id="i" * (MAX_ID_CHARS + 1)), f"id: a string of at most {MAX_ID_CHARS}"),
        # a backreference: RE2 refuses it, and says so
        (_body(matchers=[r'service=~"(a)\1"']), "not a regular expression RE2 accepts"),
    ],
)
def test_api_fields_are_bounded(body: dict[str, Any], error: str) -> None:
    with pytest.raises(SilenceError) as caught:
        rule_from_api(body, NOW)
    assert error in str(caught.value)


def _largest_rule() -> SilenceRule:
    # Every field at its limit, each value made of the characters JSON escapes longest.
    value = "\x01" * MAX_VALUE_CHARS
    return SilenceRule(
        matchers=tuple(
            Matcher(f"n{i}".ljust(MAX_NAME_CHARS, "n"), "=", value) for i in range(MAX_MATCHERS)
        ),
        starts_at=NOW,
        ends_at=NOW + 3600,
        comment="\x01" * MAX_COMMENT_CHARS,
        id="i" * MAX_ID_CHARS,
        created_by="\x01" * MAX_CREATED_BY_CHARS,
        updated_at=NOW,
    )


def test_the_largest_silence_fits_the_record_and_body_limits() -> None:
    # The store refuses records over MAX_RECORD_BYTES: none the API writes may be.
    rule = _largest_rule()
    assert len(orjson.dumps(rule_to_record(rule))) <= MAX_RECORD_BYTES
    body = {
        "matchers": [{"name": m.name, "value": m.value, "isRegex": False} for m in rule.matchers],
        "endsAt": ENDS,
        "comment": rule.comment,
        "createdBy": rule.created_by,
        "id": rule.id,
    }
    assert len(orjson.dumps(body)) <= MAX_BODY_BYTES


def _store() -> tuple[SilenceStore, FakeProducer]:
    producer = FakeProducer()
    config = TopicNames.fresh().config(receiver_type="alertmanager")
    return SilenceStore(config, cast(AIOKafkaProducer, producer), clock=lambda: NOW), producer


def _record(**fields: Any) -> bytes:
    good = rule_to_record(SilenceRule((parse_matcher("service=db"),), NOW, NOW + 3600, id="x"))
    return orjson.dumps(good | fields)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        # larger than any silence the API writes: refused before it is decoded
        (b"x", b" " * (MAX_RECORD_BYTES + 1), "over"),
        # more matchers than allowed: refused before any is parsed
        (b"x", _record(matchers=["service=db"] * 5_000), "matchers, over"),
        # a matcher of 100,000 spaces (42 s to parse before)
        (b"x", _record(matchers=["service=a" + " " * 100_000]), "longer than"),
        # a catastrophic regex RE2 does not accept, and a backreference
        (b"x", _record(matchers=[r'service=~"(a)\1"']), "RE2"),
        # a comment over its limit
        (b"x", _record(comment="c" * (MAX_COMMENT_CHARS + 1)), "comment"),
        # not JSON, and JSON nested past orjson's depth limit
        (b"x", b"\xff", "not valid UTF-8"),
        (b"x", b"[" * 5000 + b"]" * 5000, "depth"),
        # a key that is not UTF-8, and one too long to be an id
        (b"\xff", _record(), "decode"),
        (b"k" * (MAX_ID_CHARS + 1), _record(), "key of"),
    ],
)
def test_a_bad_topic_record_is_skipped_counted_and_logged(
    key: bytes, value: bytes, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = FakeProducer()
    config = TopicNames.fresh().config(receiver_type="alertmanager")
    metrics = Metrics.create()
    store = SilenceStore(
        config, cast(AIOKafkaProducer, producer), clock=lambda: NOW, metrics=metrics
    )
    began = time.perf_counter()
    store._apply(key, value, 0)
    store._apply(b"x", _record(), 1)  # the next record still applies
    assert time.perf_counter() - began < 0.5
    assert store.rejected == 1
    counted = {
        reason: metrics.registry.get_sample_value(
            "quietpager_state_records_rejected_total",
            {"topic": config.topics.silences, "reason": reason},
        )
        for reason in ("malformed", "too_large")
    }
    assert sum(v or 0 for v in counted.values()) == 1
    assert [r.id for r in store.silencer.rules] == ["x"]
    assert reason in capsys.readouterr().out


@pytest.fixture
async def api() -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    store, _ = _store()
    store.silencer.upsert(
        SilenceRule(
            (parse_matcher("job=" + "x" * 32), parse_matcher("service=db")), NOW, NOW + 60, id="s"
        )
    )
    ops = OpsServer(
        Metrics.create(), lambda: True, "127.0.0.1", 0, silences=lambda: store, clock=lambda: NOW
    )
    await ops.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield session, f"http://127.0.0.1:{ops.port}/api/v2"
    finally:
        await ops.stop()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # nested brackets: `json` raised RecursionError, a 500 with a traceback
        (b"[" * 100_000 + b"]" * 100_000, "the body is not JSON (depth limit exceeded"),
        (b'{"matchers":' * 5_000 + b"1" + b"}" * 5_000, "the body is not JSON (depth limit"),
        # over the body limit
        (b" " * (MAX_BODY_BYTES + 1), f"the body has at most {MAX_BODY_BYTES} bytes"),
        # not UTF-8
        (b"\xff\xfe", "the body is not JSON"),
    ],
)
async def test_a_bad_body_is_a_400_with_a_reason(
    api: tuple[aiohttp.ClientSession, str], body: bytes, error: str
) -> None:
    session, base = api
    async with session.post(f"{base}/silences", data=body) as response:
        assert response.status == 400
        assert (await response.json())["error"].startswith(error)


async def test_a_chunked_body_over_the_limit_is_a_400(
    api: tuple[aiohttp.ClientSession, str],
) -> None:
    session, base = api

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    async with session.post(f"{base}/silences", data=chunks()) as response:
        assert response.status == 400
        assert "at most" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("filters", "status", "answer"),
    [
        # the filter that held the event loop: RE2 answers at once, nothing matches
        (['job=~"(x+x+)+y"'], 200, []),
        # a filter that does match the silence's `job`
        (['job=~"x{32}"'], 200, ["s"]),
        # POSIX classes, as Alertmanager
        (['job=~"[[:alpha:]]+"'], 200, ["s"]),
        # a pattern RE2 refuses, with its reason
        ([r'job=~"(x)\1"'], 400, "filter: bad matcher"),
        # too many filters
        (["service=db"] * (MAX_MATCHERS + 1), 400, f"filter: at most {MAX_MATCHERS} filters"),
        # a filter text over its limit
        (["service=a" + " " * 3_000], 400, "longer than"),
    ],
)
async def test_filters(
    api: tuple[aiohttp.ClientSession, str], filters: list[str], status: int, answer: Any
) -> None:
    session, base = api
    params = [("filter", f) for f in filters]
    async with session.get(f"{base}/silences", params=params) as response:
        assert response.status == status
        got = await response.json()
    if status == 200:
        assert [s["id"] for s in got] == answer
    else:
        assert answer in got["error"]


@pytest.mark.parametrize(
    ("silence", "error"),
    [
        # a matcher's value over its limit
        ({"matchers": ["s=" + "v" * (MAX_VALUE_CHARS + 1)]}, "value longer than"),
        # too many matchers
        ({"matchers": ["s=v"] * (MAX_MATCHERS + 1)}, f"at most {MAX_MATCHERS} items"),
        # comment and created_by
        ({"matchers": ["s=v"], "comment": "c" * (MAX_COMMENT_CHARS + 1)}, "silences.0.comment"),
        (
            {"matchers": ["s=v"], "created_by": "c" * (MAX_CREATED_BY_CHARS + 1)},
            "silences.0.created_by",
        ),
        # a lookahead
        ({"matchers": ['s=~"(?=a)a"']}, "not a regular expression RE2 accepts"),
    ],
)
def test_config_silences_are_bounded(tmp_path: Path, silence: dict[str, Any], error: str) -> None:
    data = yaml.safe_load(Path("configs/local.yaml").read_text())
    data["silences"] = [silence | {"starts_at": "2026-11-26T09:00:00Z", "ends_at": ENDS}]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("section", "error"),
    [
        # a signal rule's pattern with a backreference
        (
            {"detect": {"signal_rules": [{"signal": "latency", "name_matches": r"(a)\1"}]}},
            "detect.signal_rules.0.name_matches: not a regular expression RE2 accepts",
        ),
        # a log mask with a lookbehind
        (
            {"logs": {"masking": [{"pattern": "(?<=x)y", "mask_with": "Y"}]}},
            "logs.masking.0.pattern: not a regular expression RE2 accepts",
        ),
    ],
)
def test_config_patterns_are_re2(tmp_path: Path, section: dict[str, Any], error: str) -> None:
    data = yaml.safe_load(Path("configs/local.yaml").read_text())
    for key, value in section.items():
        data[key] = (data.get(key) or {}) | value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert error in str(caught.value)
