"""`quietpager replay`: the stage cores over JSON lines, writing what would have been sent."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO

import orjson

from pipeline.config import Config
from pipeline.ingest import decode_message
from pipeline.offline import Delivery, OfflinePipeline, OfflineSummary
from pipeline.timeutil import format_timestamp


def delivery_line(delivery: Delivery) -> bytes:
    """One output line, `{"at", "receiver", "body"}` with sorted keys: runs are byte-identical."""
    record = {
        "at": format_timestamp(delivery.at),
        "receiver": delivery.receiver,
        "body": delivery.body,
    }
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"


def replay_lines(
    config: Config,
    lines: IO[bytes],
    out: IO[bytes],
    routing_keys: Mapping[str, str] | None = None,
) -> OfflineSummary:
    """Feed each line (one message: an object or an array) through the stages; write deliveries."""
    pipeline = OfflinePipeline(config, routing_keys)
    limit = config.kafka.max_message_bytes
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        for delivery in pipeline.feed(decode_message(line, "auto", limit, config.ingest.limits)):
            out.write(delivery_line(delivery))
    for delivery in pipeline.finish():
        out.write(delivery_line(delivery))
    return pipeline.summary


def replay_file(
    config: Config, input_path: Path, out_path: Path, routing_keys: Mapping[str, str] | None = None
) -> OfflineSummary:
    """`replay_lines` over files; `-` reads standard input."""
    import sys

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("wb") as out:
        if str(input_path) == "-":
            return replay_lines(config, sys.stdin.buffer, out, routing_keys)
        with input_path.open("rb") as lines:
            return replay_lines(config, lines, out, routing_keys)
