"""`bench faults` rows for the notify stage: a receiver slower than `retry.timeout`.

The receiver acts on every page as it arrives and answers only after `answer_after`,
longer than the sender ever waits, so each copy times out: the worst case, where every
copy sent is a duplicate the receiver has acted on and none is confirmed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from pipeline.bench.faults import (
    FaultResult,
    Message,
    PageId,
    _points,
    _start_on,
    fault_config,
    messages,
    read_topic,
    received_pages,
    wait_for,
)
from pipeline.config import parse_config
from pipeline.notify.sink import WebhookSink

#: Waits of 0.1, 0.2 and 0.2 s (grown by `multiplier`, capped at `max_backoff`): a receiver
#: answering after a second never answers in time.
SLOW_RETRY = {"initial_backoff": "50ms", "max_backoff": "200ms", "timeout": "100ms"}


async def slow_receiver(
    bootstrap: str,
    stream: list[Message] | None = None,
    tansu: bool = True,
    answer_after: float = 1.0,
    max_unanswered: int = 3,
    hold_s: float = 5.0,
) -> FaultResult:
    """The only receiver acts on each page at once but answers after `answer_after`.

    Each page must reach it at most `max_unanswered` times, go to the DLQ as unanswered,
    and free the receiver's queue for the next page. With `max_unanswered` 0 (no cap, as
    before there was one) the run stops `hold_s` after the first copy: the pages still
    behind the first one are then counted lost.
    """
    stream = stream if stream is not None else messages()
    sink = WebhookSink()
    arrived: dict[PageId, list[float]] = {}

    def arrival(path: str, body: dict[str, Any]) -> None:
        page = (body["event_action"], body["dedup_key"])
        arrived.setdefault(page, []).append(time.monotonic())

    sink.on_receive = arrival
    sink.answer_after = answer_after
    await sink.start()
    base = fault_config(bootstrap, sink.pagerduty_url, tansu=tansu)
    data = base.model_dump(mode="json")
    data["receivers"][0]["retry"] |= SLOW_RETRY | {"max_unanswered": max_unanswered}
    config = parse_config(data, f"<faults {base.kafka.group_prefix}>")
    want, _, stop, task = await _start_on(config, stream)
    try:
        await wait_for(lambda: bool(arrived), 60, "the first page")
        if max_unanswered:
            # Every page sent its last copy; the DLQ record follows that copy's wait.
            def spent() -> bool:
                return all(len(arrived.get(page, ())) >= max_unanswered for page in want)

            await wait_for(spent, 60, "every page's copies")
            await asyncio.sleep(2 * answer_after)  # a copy beyond the cap would come now
        else:
            await asyncio.sleep(hold_s)
        # Counted now: a page in retry goes on until the shutdown cancels it.
        got = received_pages(sink)
    finally:
        stop.set()
        await task
        await sink.stop()
    dead = [
        r
        for r in await read_topic(config, config.topics.dlq, settle_s=0.5)
        if b"without an answer" in dict(r.headers).get("qp.detail", b"")
    ]
    copies = Counter(got)
    first = sorted(times[0] for times in arrived.values())
    # How long one slow page held the receiver's queue: from its first copy to the next
    # page's first (the whole stream is in the outbox before the worker starts).
    held = first[1] - first[0] if len(first) > 1 else None
    cap = f"max_unanswered {max_unanswered}" if max_unanswered else "no cap"
    return FaultResult(
        fault=f"slow receiver (answers after {answer_after:g}s, timeout 0.1s, {cap})",
        events_in=_points(stream),
        pages_expected=len(want),
        pages_delivered=len(copies),
        duplicates=len(got) - len(copies),
        lost=len(set(want) - set(copies)),
        recovery_s=held,
        note=(
            f"copies per page {[copies[page] for page in want]}"
            + ("" if max_unanswered else f" in {hold_s:g}s")
            + f"; {len(dead)} dead-lettered as unanswered (the receiver acted on every copy, "
            "none was confirmed); recovery: how long the next page waited behind the first"
        ),
    )
