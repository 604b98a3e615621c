"""The log stage: masking, secret redaction, template mining and the signals it derives."""

from __future__ import annotations

import pickle

import pytest

from pipeline.codec import MAX_RECORD_BYTES, RecordRejected
from pipeline.config import DetectConfig, LogMaskRule, LogsConfig
from pipeline.logsignals import (
    DEFAULT_MASKS,
    LOG_SERVICE_PREFIX,
    CombinedMask,
    LogStage,
    TemplateSet,
    miner_config,
    redact_secrets,
)
from pipeline.model import Anomaly, LogRecord, SeriesKey, Signal

T0 = 1_795_680_000.0  # a multiple of 60: buckets start on T0 + k * 60


def _record(ts: float, message: str, level: str = "info", service: str = "api") -> LogRecord:
    return LogRecord(T0 + ts, level, message, (("host", "node-1"), ("service", service)))


def _config(**overrides: object) -> LogsConfig:
    settings: dict[str, object] = {
        "bucket": 60.0,
        "warmup_buckets": 3,
        "burst_min_count": 5,
        "repeat_every": 15.0,
        "silence_window": 6,
        "silence_after": 2,
    }
    settings.update(overrides)
    return LogsConfig.model_validate(settings)


def _steady(stage: LogStage, until_s: int, every_s: int = 10) -> list[Anomaly]:
    """Info traffic of one template, one line every `every_s` seconds, from 0 to `until_s`."""
    out: list[Anomaly] = []
    for second in range(0, until_s, every_s):
        out.extend(stage.observe(_record(second, f"GET /items/{second} 200 in {second % 7} ms")))
    return out


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        # numbers, with or without a unit, and signed
        ("took 250ms and 3 tries, delta -4", "took <NUM> and <NUM> tries, delta <NUM>"),
        # IPv4 with a port, and a comma-separated list of them
        ("from 10.0.0.7:5432 via 10.1.1.1,10.1.1.2", "from <IP> via <IP>"),
        # UUIDs before anything else can eat their digits
        ("instance 3f2504e0-4f89-11d3-9a0c-0305e82c3301 gone", "instance <UUID> gone"),
        # HDFS block ids
        ("Receiving block blk_-1608999687919862906 src", "Receiving block <BLK> src"),
        # 0x hex and bare hex words that mix letters and digits are numbers too
        ("iar 003a90fc dear 0x00b3", "iar <NUM> dear <NUM>"),
        # words that merely contain digits stay: they are usually names
        ("ext3 mounted on sda1 by user42", "ext3 mounted on sda1 by user42"),
        # a line without a digit is returned untouched (whitespace included)
        ("no  digits here", "no  digits here"),
        # dotted versions are not IPs and stay one token
        ("upgraded to 1.2.3", "upgraded to 1.2.3"),
    ],
)
def test_default_masks(line: str, masked: str) -> None:
    assert CombinedMask(DEFAULT_MASKS).mask(line, "<", ">") == masked


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        # key=value secrets, whatever the key's prefix
        ("login user=bob password=hunter2", "login user=bob password=<REDACTED>"),
        ("db_password: 's3 cr3t' ok", "db_password: <REDACTED> ok"),
        # bearer tokens in headers
        ("Authorization: Bearer abcdefgh12345678", "Authorization: <REDACTED>"),
        # credentials inside a URL
        ("GET https://admin:pw@db.local/x", "GET https://<REDACTED>@db.local/x"),
        # AWS access key ids and long random tokens
        ("key AKIAIOSFODNN7EXAMPLE used", "key <REDACTED> used"),
        ("sid 9f8e7d6c5b4a39281706f5e4d3c2b1a0ff00", "sid <REDACTED>"),
        # ordinary lines pass unchanged
        ("upstream timeout after 3000 ms", "upstream timeout after 3000 ms"),
    ],
)
def test_redact_secrets(line: str, redacted: str) -> None:
    assert redact_secrets(line) == redacted


def test_redact_caps_long_lines() -> None:
    assert len(redact_secrets("x " * 1000)) == 300


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        # a URL's credentials in schemes with digits and dots still go (the look-behind)
        ("pull git+ssh://ci:t0k@repo/x", "pull git+ssh://<REDACTED>@repo/x"),
        ("x-https://u:p@h/", "x-https://<REDACTED>@h/"),
        # credentials that straddle the cut are masked, not shown in part
        (
            "a" * 270 + " https://admin:" + "p" * 30 + "@db/x",
            "a" * 270 + " https://<REDACTED>@db/x",
        ),
        # one huge line: its start redacted and shown, the rest never read (it was quadratic:
        # a 20 KB run of letters took seconds, a megabyte hours)
        (
            "token=abc123 " + "x" * 1_000_000,
            "token=<REDACTED> " + "x" * (300 - len("token=<REDACTED> ") - 1) + "…",
        ),
    ],
)
def test_redact_reads_only_what_it_shows(line: str, shown: str) -> None:
    assert redact_secrets(line) == shown


def test_site_masks_run_before_the_defaults() -> None:
    rules = [LogMaskRule(pattern=r"core\.\d+", mask_with="CORE")]
    templates = TemplateSet(miner_config(extra_masks=rules))
    first, created = templates.mine("generating core.2275")
    second, again = templates.mine("generating core.42")
    assert (created, again) == (True, False)
    assert first == second
    assert templates.template(first) == "generating <CORE>"


def test_template_set_snapshot_restores_the_same_templates() -> None:
    config = miner_config()
    templates = TemplateSet(config)
    known, _ = templates.mine("user 17 logged in from 10.0.0.1")
    restored = TemplateSet(config)
    restored.restore(templates.snapshot())
    assert restored.mine("user 99 logged in from 10.9.9.9") == (known, False)
    assert len(restored) == 1


def test_steady_traffic_raises_nothing() -> None:
    stage = LogStage(_config(), DetectConfig())
    assert _steady(stage, 900) == []
    assert stage.stats.records == 90
    assert stage.templates_tracked == 1


def test_new_error_template_after_warmup_is_an_anomaly_and_repeats() -> None:
    stage = LogStage(_config(), DetectConfig())
    _steady(stage, 300)
    first = stage.observe(_record(305, "db timeout after 3000 ms on shard 7", "error"))
    assert len(first) == 1
    anomaly = first[0]
    template_id = anomaly.detail["template_id"]
    assert anomaly.series == SeriesKey.of(
        "log_template_rate", {"service": "api", "template": template_id}
    )
    assert (anomaly.ts, anomaly.signal, anomaly.score, anomaly.service) == (
        T0 + 305,
        Signal.ERRORS,
        1.0,
        "api",
    )
    assert anomaly.detail["kind"] == "new_template"
    assert anomaly.detail["template"] == "db timeout after <NUM> ms on shard <NUM>"
    assert anomaly.detail["examples"] == ["db timeout after 3000 ms on shard 7"]
    assert anomaly.detail["level"] == "error"
    # Within `repeat_every` it stays quiet; after it, a still-firing new template reports again.
    assert stage.observe(_record(310, "db timeout after 3001 ms on shard 8", "error")) == []
    again = stage.observe(_record(320, "db timeout after 3002 ms on shard 9", "error"))
    assert [a.detail["kind"] for a in again] == ["new_template"]
    assert again[0].detail["count_during"] == 3


@pytest.mark.parametrize(
    ("level", "start_s", "expected"),
    [
        # an error-level template after warm-up: reported
        ("error", 305, ["new_template"]),
        # a warning is at the default minimum level: reported
        ("warning", 305, ["new_template"]),
        # an info-level template is just new traffic
        ("info", 305, []),
        # during the service's warm-up every template is new: nothing is reported
        ("error", 65, []),
    ],
)
def test_new_template_rule(level: str, start_s: int, expected: list[str]) -> None:
    stage = LogStage(_config(), DetectConfig())
    _steady(stage, start_s)
    found = stage.observe(_record(start_s, "disk quota exceeded for volume vol-9", level))
    assert [a.detail["kind"] for a in found] == expected


@pytest.mark.parametrize(
    ("level", "burst_min_level", "signal"),
    [
        # a known warning template bursting: errors
        ("warning", "warning", Signal.ERRORS),
        # an info template bursting is not reported by default (nightly jobs do that)
        ("info", "warning", None),
        # unless the site asks for it: then it is traffic
        ("info", "info", Signal.TRAFFIC),
    ],
)
def test_burst_of_a_known_template_is_reported_before_its_bucket_ends(
    level: str, burst_min_level: str, signal: Signal | None
) -> None:
    stage = LogStage(_config(burst_min_level=burst_min_level), DetectConfig())
    # Two cache misses per minute for ten minutes: a known, quiet template.
    for minute in range(10):
        for second in (5, 35):
            stage.observe(_record(minute * 60 + second, f"cache miss for key k{second}", level))
    found: list[Anomaly] = []
    for index in range(40):
        line = _record(600 + index * 0.5, f"cache miss for key k{index}", level)
        found.extend(stage.observe(line))
    bursts = [a for a in found if a.detail["kind"] == "template_burst"]
    if signal is None:
        assert bursts == []
        return
    assert bursts, "a 20x burst must be reported"
    first = bursts[0]
    assert first.signal is signal
    assert first.ts < T0 + 660  # inside the bucket, not at its close
    assert first.value >= 5
    assert first.expected == pytest.approx(2.0)
    assert first.detail["count_during"] == first.value
    assert first.detail["baseline_per_bucket"] == pytest.approx(2.0)


def test_error_rate_of_a_service() -> None:
    stage = LogStage(_config(), DetectConfig())
    for minute in range(10):
        stage.observe(_record(minute * 60 + 1, "request failed: upstream reset", "error"))
    found: list[Anomaly] = []
    for index in range(30):
        # Many error templates at once: each alone is new, together a rate.
        found.extend(stage.observe(_record(600 + index, f"failure kind{index} on worker", "error")))
    rates = [a for a in found if a.detail["kind"] == "error_rate"]
    assert rates
    assert rates[0].series == SeriesKey.of("log_error_rate", {"service": "api"})
    assert rates[0].signal is Signal.ERRORS
    assert len(rates[0].detail["examples"]) == 3


def test_a_steady_template_that_goes_silent() -> None:
    stage = LogStage(_config(), DetectConfig())
    for minute in range(10):
        if minute < 8:
            assert stage.observe(_record(minute * 60 + 30, "heartbeat ok from scheduler")) == []
        # Other traffic goes on: only the heartbeat stops.
        stage.observe(_record(minute * 60 + 31, f"GET /items/{minute} 200"))
    assert stage.advance(T0 + 540) == []  # one bucket without it is not yet silence
    found = stage.advance(T0 + 600)
    assert [a.detail["kind"] for a in found] == ["template_silent"]
    silent = found[0]
    assert (silent.ts, silent.signal, silent.value) == (T0 + 600, Signal.TRAFFIC, 0.0)
    assert silent.detail["template"] == "heartbeat ok from scheduler"
    assert silent.detail["examples"] == ["heartbeat ok from scheduler"]
    # While it stays silent it is reported again every `repeat_every`, so it can page.
    assert stage.advance(T0 + 610) == []
    again = stage.advance(T0 + 615)
    assert [(a.detail["kind"], a.ts) for a in again] == [("template_silent", T0 + 615)]
    # Once it is back, it is not silent any more.
    stage.observe(_record(620, "heartbeat ok from scheduler"))
    assert stage.advance(T0 + 640) == []


def test_a_long_silence_becomes_the_new_normal() -> None:
    stage = LogStage(_config(), DetectConfig())
    for minute in range(8):
        stage.observe(_record(minute * 60 + 30, "heartbeat ok from scheduler"))
    reports = [a for second in range(480, 1500, 5) for a in stage.advance(T0 + second)]
    assert {a.detail["kind"] for a in reports} == {"template_silent"}
    # Detected at 600 s, reported every 15 s for `silence_window` buckets, then let go.
    assert reports[0].ts == T0 + 600
    assert reports[-1].ts <= T0 + 600 + 6 * 60
    assert stage.advance(T0 + 2000) == []


def test_a_sparse_template_going_quiet_is_not_silence() -> None:
    stage = LogStage(_config(), DetectConfig())
    for minute in range(0, 12, 3):
        stage.observe(_record(minute * 60 + 30, "nightly report sent"))
    assert stage.advance(T0 + 20 * 60) == []


def test_late_lines_count_toward_the_open_bucket() -> None:
    stage = LogStage(_config(), DetectConfig())
    stage.observe(_record(130, "a line"))
    stage.observe(_record(70, "a line"))
    assert stage.stats.late == 1


def test_bounds_on_services_and_templates() -> None:
    stage = LogStage(_config(max_services=2, max_templates_per_service=2), DetectConfig())
    for service in ("a", "b", "c"):
        stage.observe(_record(1, "x started", service=service))
    assert stage.services_tracked == 2
    assert stage.stats.evicted["lru"] == 1
    for word in ("alpha", "beta", "gamma"):
        stage.observe(_record(2, f"only {word} here now", service="c"))
    assert stage.templates_tracked <= 2 + 2
    assert stage.stats.evicted["templates"] >= 1


def test_an_empty_service_label_is_the_unlabelled_service() -> None:
    """Lines with `service: ""` and lines without the label are one service, `unknown`."""
    stage = LogStage(_config(), DetectConfig())
    stage.observe(_record(1, "x started", service=""))
    stage.observe(LogRecord(T0 + 2, "info", "x started", (("host", "node-1"),)))
    assert stage.services_tracked == 1


def test_idle_services_expire_after_their_ttl() -> None:
    stage = LogStage(_config(service_ttl=600.0), DetectConfig())
    stage.observe(_record(0, "boot", service="old"))
    stage.observe(_record(3600, "boot", service="new"))
    assert stage.services_tracked == 1
    assert stage.stats.evicted["ttl"] == 1


def test_snapshot_restore_gives_the_same_answers() -> None:
    stage = LogStage(_config(), DetectConfig())
    _steady(stage, 300)
    blob = stage.snapshot()
    restored = LogStage(_config(), DetectConfig())
    restored.restore(blob)
    line = _record(305, "db timeout after 3000 ms on shard 7", "error")
    assert [a.to_dict() for a in restored.observe(line)] == [
        a.to_dict() for a in stage.observe(line)
    ]


def test_restore_skips_bad_records_and_keeps_the_rest() -> None:
    stage = LogStage(_config(), DetectConfig())
    _steady(stage, 300)
    stage.observe(_record(300, "cache warm on node 3", service="other"))
    records = stage.snapshot()
    good = records.pop(LOG_SERVICE_PREFIX + "other")
    records[LOG_SERVICE_PREFIX + "evil"] = pickle.dumps((99, 0.0, []))  # an older pickle
    records[LOG_SERVICE_PREFIX + "cut"] = good[: len(good) // 2]  # a truncated record
    restored = LogStage(_config(), DetectConfig())
    rejected: list[RecordRejected] = []
    assert restored.restore(records, rejected.append) == 1
    assert sorted(r.reason for r in rejected) == ["malformed", "not_a_record"]
    assert restored.services_tracked == 1
    assert restored.watermark == stage.watermark


def test_a_huge_service_is_left_out_of_the_snapshot_not_the_others() -> None:
    stage = LogStage(_config(), DetectConfig())
    _steady(stage, 300)
    # Many long distinct templates: more than one record can hold.
    for i in range(400):
        words = " ".join(f"w{i}x{j}" + "y" * 40 for j in range(60))
        stage.observe(_record(300, words, service="noisy"))
    records = stage.snapshot()
    assert LOG_SERVICE_PREFIX + "noisy" not in records
    assert [r.reason for r in stage.rejected] == ["too_large"]
    assert all(len(blob) <= MAX_RECORD_BYTES for blob in records.values())
    restored = LogStage(_config(), DetectConfig())
    assert restored.restore(records) == 1


def test_anomaly_detail_round_trips_and_stays_out_of_identity() -> None:
    series = SeriesKey.of("log_template_rate", {"service": "api", "template": "3"})
    plain = Anomaly(T0, series, "api", Signal.ERRORS, 4.0, 0.5, 1.0, 0.99)
    detailed = Anomaly(
        T0, series, "api", Signal.ERRORS, 4.0, 0.5, 1.0, 0.99, detail={"template": "x <NUM>"}
    )
    assert "detail" not in plain.to_dict()  # metric anomalies keep their exact JSON
    assert Anomaly.from_dict(detailed.to_dict()) == detailed
    assert Anomaly.from_dict(detailed.to_dict()).detail == {"template": "x <NUM>"}
    assert plain == detailed
    assert hash(plain) == hash(detailed)


def test_doctests() -> None:
    import doctest

    import pipeline.logmask
    import pipeline.logstate

    for module in (pipeline.logmask, pipeline.logstate):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0
