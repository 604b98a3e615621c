"""`bench throughput`: its load and its worker config (the broker run itself is a benchmark)."""

from __future__ import annotations

import pytest

from pipeline.bench.throughput import _config, load_messages


@pytest.mark.parametrize("model", ["golden", "likelihood"])
def test_config_carries_the_model(model: str) -> None:
    config = _config("127.0.0.1:9092", "x", model)
    assert config.detect.model == model
    assert config.worker.stages == ["detect", "correlate"]


def test_load_packs_batch_points_per_message() -> None:
    messages = load_messages(1000, 50, 20)
    assert len(messages) == 50
