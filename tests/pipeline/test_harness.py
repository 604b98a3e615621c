"""The broker-test harness's pure parts: what a sink got, how many points, waiting."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.harness import FAULT_SCENARIO, messages, point_count, received_pages, wait_for
from pipeline.notify.sink import WebhookSink


@pytest.mark.parametrize(
    ("body", "page"),
    [
        # PagerDuty v2: the action and key as sent
        ({"event_action": "trigger", "dedup_key": "k1"}, ("trigger", "k1")),
        # Alertmanager v4 firing: a trigger under the group's dedup_key
        ({"status": "firing", "groupLabels": {"dedup_key": "k2"}}, ("trigger", "k2")),
        # Alertmanager v4 resolved: a resolve
        ({"status": "resolved", "groupLabels": {"dedup_key": "k2"}}, ("resolve", "k2")),
    ],
)
def test_received_pages_reads_either_body(body: dict[str, Any], page: tuple[str, str]) -> None:
    sink = WebhookSink()
    sink.received.append(("/path", body))
    assert received_pages(sink) == [page]


def test_fault_stream_is_one_keyed_message_per_service_and_step() -> None:
    stream = messages()
    services = len(FAULT_SCENARIO.topology)
    assert len(stream) == services * FAULT_SCENARIO.steps
    assert {key.decode() for key, _ in stream[:services]} == set(FAULT_SCENARIO.topology)
    assert point_count(stream[:services]) == 4 * services  # the four golden signals
    assert all(len(orjson.loads(value)) == 4 for _, value in stream[:services])


async def test_wait_for_names_what_it_waited_for() -> None:
    await wait_for(lambda: True, 0.0, "nothing")
    with pytest.raises(TimeoutError, match="timed out waiting for the moon"):
        await wait_for(lambda: False, 0.1, "the moon")
