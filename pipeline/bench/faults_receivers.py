"""`bench faults` rows where a webhook receiver fails: an outage and one receiver down."""

from __future__ import annotations

import asyncio
import time

from pipeline.bench.faults import FaultResult, _compare, _points, _start_on
from pipeline.config import parse_config
from pipeline.harness import ROUTING_KEY, Message, fault_config, messages, received_pages, wait_for
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.worker import Worker


async def webhook_outage(
    bootstrap: str, stream: list[Message] | None = None, tansu: bool = True
) -> FaultResult:
    """The receiver answers 503, then refuses connections while the worker restarts."""
    stream = stream if stream is not None else messages()
    down = WebhookSink()
    await down.start()
    port = int(down.url.rsplit(":", 1)[1])
    down.fail_next(1_000_000, status=503)
    config = fault_config(bootstrap, down.pagerduty_url, tansu=tansu)
    want, metrics, stop, task = await _start_on(config, stream)

    def retried() -> float:
        return (
            metrics.registry.get_sample_value(
                "quietpager_webhook_attempts_total",
                {"receiver": "oncall", "outcome": "retry_status"},
            )
            or 0.0
        )

    try:
        await wait_for(lambda: retried() >= 3, 60, "retries against the 503s")
    finally:
        await down.stop()  # now connections are refused
        await asyncio.sleep(0.5)
        stop.set()
        await task  # the page in flight stays in the outbox topic, uncommitted
    back = WebhookSink(port=port)
    await back.start()
    try:
        recovered = time.monotonic()
        worker = Worker(config, Metrics.create(), routing_keys={"oncall": ROUTING_KEY})
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await wait_for(lambda: len(back.received) >= len(want), 60, "the pages")
            recovery = time.monotonic() - recovered
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await task
        order = [b["event_action"] for _, b in back.received]
        return _compare(
            "webhook 503 then refused, worker restarted",
            _points(stream),
            want,
            back,
            recovery,
            f"{retried():.0f} retries; order {order}",
        )
    finally:
        await back.stop()


async def receiver_down(
    bootstrap: str, stream: list[Message] | None = None, tansu: bool = True
) -> FaultResult:
    """Of two receivers, one answers 503 throughout the incident: the other must get every
    page meanwhile, and the first its own once it is back, none lost or sent twice."""
    stream = stream if stream is not None else messages()
    down, chat = WebhookSink(), WebhookSink()
    await down.start()
    await chat.start()
    port = int(down.url.rsplit(":", 1)[1])
    down.fail_next(1_000_000, status=503)
    base = fault_config(bootstrap, down.pagerduty_url, tansu=tansu)
    data = base.model_dump(mode="json")
    retry = {"initial_backoff": "50ms", "max_backoff": "500ms"}
    data["receivers"].append(
        {"name": "chat", "type": "alertmanager", "url": chat.alertmanager_url, "retry": retry}
    )
    data["route"]["receivers"] = ["oncall", "chat"]
    config = parse_config(data, f"<faults {base.kafka.group_prefix}>")
    want, _, stop, task = await _start_on(config, stream)
    back = WebhookSink(port=port)
    try:
        started = time.monotonic()
        await wait_for(lambda: len(chat.received) >= len(want), 60, "the healthy receiver")
        healthy_s = time.monotonic() - started
        refused = down.requests_seen
        await down.stop()
        await back.start()  # the receiver that was down comes back
        recovered = time.monotonic()
        await wait_for(lambda: len(back.received) >= len(want), 60, "the receiver back up")
        recovery = time.monotonic() - recovered
        await asyncio.sleep(0.5)  # anything extra would arrive now
    finally:
        stop.set()
        await task
        await back.stop()
        await chat.stop()
    per_receiver = [received_pages(chat), received_pages(back)]
    distinct = sum(len(set(got)) for got in per_receiver)
    return FaultResult(
        fault="one receiver answers 503, another is up",
        events_in=_points(stream),
        pages_expected=2 * len(want),
        pages_delivered=distinct,
        duplicates=sum(map(len, per_receiver)) - distinct,
        lost=sum(len(set(want) - set(got)) for got in per_receiver),
        recovery_s=recovery,
        note=(
            f"the other got its {len(per_receiver[0])} pages {healthy_s:.1f}s after start, "
            f"while the one down answered 503 {refused} times; "
            f"order {[a for a, _ in per_receiver[1]]} once back"
        ),
    )
