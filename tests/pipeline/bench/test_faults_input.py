"""The input-side rows of `quietpager bench faults`, on the shipped functions."""

from __future__ import annotations

import os

import orjson
import pytest

from pipeline.bench.faults_input import oversized_input, series_memory, worst_case_key
from pipeline.config import IngestConfig
from pipeline.ingest import DLQ_MAX_RECORD_BYTES, decode_message

TANSU = not os.environ.get("QUIETPAGER_TEST_BOOTSTRAP")


@pytest.mark.broker
async def test_oversized_label_and_message_neither_stall_nor_lose_a_page(
    kafka_bootstrap: str,
) -> None:
    result = await oversized_input(kafka_bootstrap, tansu=TANSU)
    assert result.pages_expected == 2  # one trigger, one resolve
    assert (result.pages_delivered, result.lost, result.duplicates) == (2, 0, 0)
    assert result.recovery_s is not None  # the detect group committed past the poison
    assert "no stage restart" in result.note
    assert "['too_large_label', 'too_large', 'too_large_label']" in result.note


@pytest.mark.parametrize(
    "ingest",
    [
        # the shipped bounds
        IngestConfig(),
        # one label may take the whole key
        IngestConfig(max_labels=1, max_label_value_bytes=4000),
        # no labels at all: the name is the whole key
        IngestConfig(max_labels=0, max_name_bytes=4096),
    ],
)
def test_the_worst_case_key_is_accepted_and_at_the_bound(ingest: IngestConfig) -> None:
    item = worst_case_key(ingest.limits)
    decoded = decode_message(orjson.dumps(item), "metrics", limits=ingest.limits)
    assert decoded.rejects == []
    size = len(item["name"]) + sum(len(k) + len(v) for k, v in item["labels"].items())
    assert size == ingest.max_series_key_bytes
    assert size < DLQ_MAX_RECORD_BYTES


def test_series_memory_measures_a_bounded_cost_per_series() -> None:
    result = series_memory(count=300, points=35, traced=True)
    assert result.key_bytes == 4096
    # A series holds at least its key, and nowhere near the 2.4 MiB a 500 KB label cost.
    assert 4096 < result.rss_per_series < 64 * 1024
