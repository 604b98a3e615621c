"""Timestamps and durations at the edges: RFC 3339 and UNIX seconds in, floats inside."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The longest duration a setting may have: ten years (far longer ones overflowed the dates
#: pages are stamped with, and mean nothing for a pager).
MAX_DURATION_S = 3660 * 86400.0
#: The range of instants that RFC 3339 (and `datetime`) can write: years 1 to 9999.
MIN_TIMESTAMP = -62135596800.0
MAX_TIMESTAMP = 253402300799.0


def parse_duration(text: str | float | int) -> float:
    """Seconds from `90`, `1.5`, `250ms`, `30s`, `5m`, `4h` or `1d`.

    >>> parse_duration("5m"), parse_duration(2), parse_duration("250ms")
    (300.0, 2.0, 0.25)
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        match = _DURATION.match(text)
        if match is None:
            raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 4h, 250ms)")
        value = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a duration: {text!r}")
    if value > MAX_DURATION_S:
        raise ValueError(f"duration {text!r} is longer than ten years (3660d)")
    return value


def parse_timestamp(value: object) -> float:
    """UNIX seconds from a number or an RFC 3339 string; raises ValueError otherwise.

    >>> parse_timestamp("2026-11-26T09:00:00Z")
    1795683600.0
    >>> parse_timestamp(1795683600)
    1795683600.0
    """
    if isinstance(value, bool):
        raise ValueError("timestamp is a boolean")
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("timestamp is empty")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"timestamp is not RFC 3339: {value!r}") from exc
        if parsed.tzinfo is None:
            raise ValueError(f"timestamp has no time zone: {value!r}")
        ts = parsed.timestamp()
    else:
        raise ValueError(f"timestamp has type {type(value).__name__}")
    if not math.isfinite(ts):
        raise ValueError("timestamp is not finite")
    if not MIN_TIMESTAMP <= ts <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp {value!r} is outside the years 1 to 9999")
    return ts


def format_timestamp(ts: float) -> str:
    """RFC 3339 in UTC with millisecond precision and a `Z`.

    >>> format_timestamp(1795683600.25)
    '2026-11-26T09:00:00.250Z'
    """
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
