"""The one codec for the state records quietpager writes to its changelogs and reads back.

A record is `MAGIC`, then a JSON object `{"kind": ..., "v": ..., "body": {...}}` (orjson).
Decoding never instantiates a class named by the data: each decoder reads explicit fields of
known types and builds the project's own objects from them. Records are bounded in size on
both sides (`MAX_RECORD_BYTES`, under a real Kafka's default 1 MB `message.max.bytes`).

Why JSON and not a binary format: orjson is already a dependency, a record can be read with
any tool, and the one bulky field (a compiled model's float64 array) is carried as base64 of
its little-endian bytes, so it round-trips bit for bit (NaN and infinities included). Scalar
floats round-trip exactly through orjson's shortest representation; the non-finite ones,
which JSON lacks, are written as the strings "nan", "inf" and "-inf".

>>> blob = encode("example", 1, {"ts": pack_float(float("-inf")), "x": 0.1})
>>> blob[:4]
b'QPS\\x01'
>>> body = decode(blob, "example", 1)
>>> unpack_float(body["ts"]), unpack_float(body["x"])
(-inf, 0.1)
>>> decode(b"\\x80\\x04junk", "example", 1)
Traceback (most recent call last):
...
pipeline.codec.RecordRejected: not_a_record: the record does not start with the codec's header
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import numpy as np
import orjson

from pipeline.errors import QuietpagerError

#: Every record starts with these bytes: "QPS" and the codec's format number. A pickle starts
#: with 0x80 and JSON with "{", so neither is mistaken for a record.
MAGIC: Final = b"QPS\x01"
#: The largest record (value) written or read: a real Kafka refuses a message over its default
#: `message.max.bytes` (1,048,588 bytes with the batch overhead); the key and headers need room.
MAX_RECORD_BYTES: Final = 900_000

#: Why a record was rejected, the `reason` label of `quietpager_state_records_rejected_total`.
REJECT_REASONS: Final = ("not_a_record", "malformed", "wrong_kind", "version", "too_large")


class RecordRejected(QuietpagerError):
    """A state record that cannot be written or restored; `reason` is one of `REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(kind: str, version: int, body: Mapping[str, Any]) -> bytes:
    """One record of `kind` at schema `version`; raises `RecordRejected("too_large")` over
    `MAX_RECORD_BYTES`, so the caller keeps its last good record rather than fail the write."""
    blob = MAGIC + orjson.dumps({"kind": kind, "v": version, "body": body})
    if len(blob) > MAX_RECORD_BYTES:
        raise RecordRejected("too_large", f"{kind} record of {len(blob)} bytes")
    return blob


def decode(blob: bytes, kind: str, version: int) -> dict[str, Any]:
    """The body of a record of `kind` at schema `version`; raises `RecordRejected`."""
    if len(blob) > MAX_RECORD_BYTES:
        raise RecordRejected("too_large", f"record of {len(blob)} bytes")
    if not blob.startswith(MAGIC):
        raise RecordRejected("not_a_record", "the record does not start with the codec's header")
    try:
        data = orjson.loads(blob[len(MAGIC) :])
    except orjson.JSONDecodeError as exc:
        raise RecordRejected("malformed", f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("body"), dict):
        raise RecordRejected("malformed", "no body")
    if data.get("kind") != kind:
        raise RecordRejected("wrong_kind", f"a {data.get('kind')!r} record, not {kind!r}")
    if data.get("v") != version:
        raise RecordRejected("version", f"{kind} schema {data.get('v')!r}, not {version}")
    body: dict[str, Any] = data["body"]
    return body


@contextmanager
def reading(kind: str) -> Iterator[None]:
    """Turn a decoder's lookup and type errors into `RecordRejected("malformed")`."""
    try:
        yield
    except RecordRejected:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise RecordRejected("malformed", f"bad {kind} record: {exc!r}") from None


_NON_FINITE: Final = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def pack_float(x: float) -> float | str:
    """A float as JSON can hold it: itself, or "nan", "inf", "-inf"."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def unpack_float(value: Any) -> float:
    """Inverse of `pack_float`; raises ValueError on anything else (a bool included)."""
    if isinstance(value, str):
        found = _NON_FINITE.get(value)
        if found is None:
            raise ValueError(f"not a float: {value!r}")
        return found
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a float: {value!r}")
    return float(value)


def unpack_int(value: Any) -> int:
    """An integer field; raises ValueError on anything else (a bool or a float included)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an integer: {value!r}")
    return value


def unpack_str(value: Any) -> str:
    """A string field; raises ValueError on anything else."""
    if not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    return value


def unpack_bool(value: Any) -> bool:
    """A boolean field; raises ValueError on anything else."""
    if not isinstance(value, bool):
        raise ValueError(f"not a boolean: {value!r}")
    return value


def pack_floats(values: np.ndarray[Any, Any]) -> str:
    """A float64 array as base64 of its little-endian bytes: exact, NaN and infinities too."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode()


def unpack_floats(value: Any, length: int) -> np.ndarray[Any, Any]:
    """Inverse of `pack_floats`, for an array of exactly `length` floats (a fresh copy)."""
    try:
        raw = base64.b64decode(unpack_str(value), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None
    if len(raw) != 8 * length:
        raise ValueError(f"{len(raw)} bytes where {length} floats were expected")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64)
