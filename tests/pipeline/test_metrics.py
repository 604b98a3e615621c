"""/metrics as a Prometheus user reads it: every known series from the first scrape, at zero;
the runtime collectors; no `_created`; help on every family; `promtool check metrics` clean."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

import pipeline
from pipeline.config import Config, parse_config
from pipeline.correlate.incidents import DECISION_REASONS
from pipeline.detect import DetectStats
from pipeline.ingest import REJECT_REASONS
from pipeline.metrics import (
    DECODE_REASONS,
    DLQ_REASONS,
    EVICTION_CAUSES,
    KNOWN_LABELS,
    WEBHOOK_OUTCOMES,
    Metrics,
)
from pipeline.model import Signal
from pipeline.ops import OpsServer
from pipeline.worker import Worker
from tests.fakes import FakeProducer

#: One exported sample: its name and its labels.
SampleId = tuple[str, frozenset[tuple[str, str]]]


def _config() -> Config:
    return parse_config(
        {
            "receivers": [
                {"name": "oncall", "type": "alertmanager", "url": "http://127.0.0.1:9/a"},
                {"name": "chat", "type": "alertmanager", "url": "http://127.0.0.1:9/b"},
            ],
            "route": {"receivers": ["oncall"]},
        }
    )


def _families(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def _samples(families: Iterable[Metric]) -> dict[SampleId, float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in families
        for s in family.samples
    }


def _sample(name: str, **labels: str) -> SampleId:
    return name, frozenset(labels.items())


async def _scrape(metrics: Metrics) -> str:
    """GET /metrics from the ops server, as Prometheus would."""
    ops = OpsServer(metrics, lambda: False, "127.0.0.1", 0)
    await ops.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{ops.port}/metrics") as response,
        ):
            assert response.status == 200
            return await response.text()
    finally:
        await ops.stop()


def _expected_zeros(receivers: list[str], stages: list[str]) -> set[SampleId]:
    expected = {_sample("quietpager_events_in_total", stream=s) for s in ("metrics", "logs")}
    expected |= {_sample("quietpager_decode_errors_total", reason=r) for r in DECODE_REASONS}
    expected |= {_sample("quietpager_dlq_records_total", reason=r) for r in DLQ_REASONS}
    expected |= {_sample("quietpager_anomalies_total", signal=s.value) for s in Signal}
    expected |= {
        _sample("quietpager_correlation_decisions_total", kind=k, reason=r)
        for k, r in DECISION_REASONS
    }
    expected |= {_sample("quietpager_series_evicted_total", cause=c) for c in ("ttl", "lru")}
    expected |= {
        _sample("quietpager_pages_sent_total", receiver=r, action=a)
        for r in receivers
        for a in ("trigger", "resolve")
    }
    expected |= {
        _sample("quietpager_webhook_attempts_total", receiver=r, outcome=o)
        for r in receivers
        for o in WEBHOOK_OUTCOMES
    }
    expected |= {_sample("quietpager_webhook_failures_total", receiver=r) for r in receivers}
    expected |= {_sample("quietpager_batch_duration_seconds_count", stage=s) for s in stages}
    stateful = [s for s in stages if s in ("detect", "correlate")]
    expected |= {_sample("quietpager_state_checkpoints_total", stage=s) for s in stateful}
    expected |= {_sample("quietpager_state_restored_total", stage=s) for s in stateful}
    return expected


async def test_every_known_series_is_exported_at_zero_from_the_first_scrape() -> None:
    metrics = Metrics.create()
    Worker(_config(), metrics)  # knowing the config is enough: nothing has run yet
    samples = _samples(_families(await _scrape(metrics)))

    stages = ["detect", "correlate", "notify-oncall", "notify-chat"]
    expected = _expected_zeros(["oncall", "chat"], stages)
    assert {sample: samples.get(sample) for sample in expected} == dict.fromkeys(expected, 0.0)
    # Spelt out once, not only derived from the constants above: the first errors a user
    # would alert on.
    assert samples[_sample("quietpager_decode_errors_total", reason="not_json")] == 0.0
    assert samples[_sample("quietpager_dlq_records_total", reason="undeliverable")] == 0.0
    assert (
        samples[_sample("quietpager_webhook_attempts_total", receiver="chat", outcome="permanent")]
        == 0.0
    )


@pytest.mark.parametrize(
    ("stages", "receivers", "stage_names"),
    [
        # a detect-only worker exports no receiver and no other stage
        (("detect",), [], ["detect"]),
        # a notify-only worker: one stage per receiver, and the receivers' series
        (("notify",), ["oncall", "chat"], ["notify-oncall", "notify-chat"]),
        # a correlate-only worker
        (("correlate",), [], ["correlate"]),
    ],
)
def test_only_the_stages_a_worker_runs_are_exported(
    stages: tuple[str, ...], receivers: list[str], stage_names: list[str]
) -> None:
    metrics = Metrics.create()
    Worker(_config(), metrics, stages=stages)
    samples = _samples(_families(metrics.exposition().decode()))

    config_labelled = {
        (name, labels)
        for name, labels in samples
        if {"stage", "receiver"} & dict(labels).keys() and not name.endswith(("_bucket", "_sum"))
    }
    assert config_labelled == _expected_zeros(receivers, stage_names) - _expected_zeros([], [])
    # Histograms: every bucket is there too, at zero.
    for stage in stage_names:
        assert (
            samples[_sample("quietpager_batch_duration_seconds_bucket", stage=stage, le="+Inf")]
            == 0
        )


def test_the_stage_labels_are_the_names_of_the_stages_the_worker_builds() -> None:
    metrics = Metrics.create()
    worker = Worker(_config(), metrics)
    runners = worker._build_runners(FakeProducer())
    exported = {
        dict(labels)["stage"]
        for name, labels in _samples(_families(metrics.exposition().decode()))
        if name == "quietpager_batch_duration_seconds_count"
    }
    assert exported == {runner.name for runner in runners}


def test_the_exposition_has_no_created_series_and_help_on_every_family() -> None:
    metrics = Metrics.create()
    Worker(_config(), metrics)
    metrics.decode_errors.labels("not_json").inc()
    metrics.stage_latency.labels("detect").observe(0.01)
    families = _families(metrics.exposition().decode())

    assert [s.name for f in families for s in f.samples if s.name.endswith("_created")] == []
    assert [f.name for f in families if not f.documentation.strip()] == []
    names = {f.name for f in families}
    # The process, Python GC and platform collectors, on this registry.
    assert {"process_cpu_seconds", "python_gc_collections", "python_info"} <= names
    assert all(f.name.startswith(("quietpager_", "process_", "python_")) for f in families)


def test_other_registries_keep_their_created_series() -> None:
    if os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "").lower() in ("true", "1", "t"):
        pytest.skip("PROMETHEUS_DISABLE_CREATED_SERIES is set: no registry has _created here")
    other = CollectorRegistry()
    Counter("embedding_app_requests", "An application's own counter.", registry=other)
    Metrics.create().exposition()

    assert other.get_sample_value("embedding_app_requests_created") is not None


def test_promtool_check_metrics_is_clean() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (Debian: apt-get install prometheus)")
    metrics = Metrics.create()
    Worker(_config(), metrics)
    # Every kind of sample: counters counted, a histogram observed, a labelled gauge set.
    metrics.events_in.labels("metrics").inc(10)
    metrics.dlq_records.labels("not_json").inc()
    metrics.stage_latency.labels("detect").observe(0.003)
    metrics.consumer_lag.labels("detect", "telemetry.metrics", "0").set(42)
    metrics.series_tracked.set(3)

    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=metrics.exposition(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


def _literal_reasons(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Reasons written as literals: `Reject("x", ...)`, and `decode_errors.labels("x")`."""
    rejects: set[str] = set()
    decode_errors: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Reject":
            rejects.add(first.value)
        elif (
            isinstance(func, ast.Attribute)
            and func.attr == "labels"
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "decode_errors"
        ):
            decode_errors.add(first.value)
    return rejects, decode_errors


def test_every_reason_the_code_counts_is_one_exported_at_zero() -> None:
    rejects: set[str] = set()
    decode_errors: set[str] = set()
    for path in Path(pipeline.__file__).parent.rglob("*.py"):
        found = _literal_reasons(ast.parse(path.read_text(encoding="utf-8")))
        rejects |= found[0]
        decode_errors |= found[1]

    assert rejects  # the walk found the code it guards
    assert rejects - set(DLQ_REASONS) == set()
    assert decode_errors - set(DECODE_REASONS) == set()
    assert set(REJECT_REASONS) <= set(DLQ_REASONS) & set(DECODE_REASONS)
    assert set(DetectStats().evicted) == set(EVICTION_CAUSES)
    # Every handle named in the table exists.
    assert set(KNOWN_LABELS) <= set(Metrics.__dataclass_fields__)
