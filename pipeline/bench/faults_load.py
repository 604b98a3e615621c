"""`bench faults` rows without a broker: fuzzed input to the decoder, a cardinality flood."""

from __future__ import annotations

import random
import resource
from collections.abc import Callable

import orjson

from pipeline.bench.faults import FaultResult
from pipeline.config import DetectConfig
from pipeline.detect import DetectStage
from pipeline.ingest import REJECT_REASONS, decode_message
from pipeline.model import MetricPoint, SeriesKey


def _mutations(rng: random.Random) -> list[Callable[[bytes], bytes]]:
    def truncate(raw: bytes) -> bytes:
        return raw[: rng.randrange(len(raw))]

    def flip(raw: bytes) -> bytes:
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)

    def retype(raw: bytes) -> bytes:
        item = orjson.loads(raw)
        field = rng.choice(["name", "value", "ts", "labels", "signal"])
        item[field] = rng.choice([None, True, [], {}, "x", -1, 1e308, "NaN", ""])
        return orjson.dumps(item)

    def drop(raw: bytes) -> bytes:
        item = orjson.loads(raw)
        item.pop(rng.choice(["name", "value", "ts"]), None)
        return orjson.dumps(item)

    def literal(raw: bytes) -> bytes:
        return raw.replace(
            b'"value":', b'"value":' + rng.choice([b"NaN,", b"Infinity,", b"-1e999,"])
        )

    def timestamp(raw: bytes) -> bytes:
        item = orjson.loads(raw)
        item["ts"] = rng.choice(["2026-02-30T00:00:00Z", "yesterday", 1e30, -1e30, "0", 0])
        return orjson.dumps(item)

    def oversize(raw: bytes) -> bytes:
        return b"[" + b",".join([raw] * 5000) + b"]"

    def noise(raw: bytes) -> bytes:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))

    return [truncate, flip, retype, drop, literal, timestamp, oversize, noise]


def fuzz_decoder(count: int = 100_000, seed: int = 11) -> FaultResult:
    """`count` malformed messages through the decoder: none may raise, each gets a reason."""
    rng = random.Random(seed)
    mutations = _mutations(rng)
    base = orjson.dumps(
        {
            "name": "http_request_duration_seconds",
            "value": 0.2,
            "ts": 1_795_683_600.0,
            "labels": {"service": "checkout"},
        }
    )
    crashes = 0
    reasons: dict[str, int] = {}
    unknown = 0
    accepted = 0
    for _ in range(count):
        raw = rng.choice(mutations)(base)
        try:
            decoded = decode_message(raw, "auto", max_bytes=262_144)
        except Exception:  # counting crashes is the point of the fuzz run
            crashes += 1
            continue
        accepted += len(decoded.points) + len(decoded.logs)
        for reject in decoded.rejects:
            reasons[reject.reason] = reasons.get(reject.reason, 0) + 1
            unknown += reject.reason not in REJECT_REASONS
    top = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
    return FaultResult(
        fault=f"fuzzed messages through the decoder (seed {seed})",
        events_in=count,
        pages_expected=0,
        pages_delivered=0,
        duplicates=0,
        lost=crashes + unknown,
        recovery_s=None,
        note=f"{crashes} crashes; {accepted} items still valid; top reasons: {top}",
    )


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cardinality_flood(
    new_series: int = 1_000_000, max_series: int = 50_000, established: int = 100, seed: int = 5
) -> FaultResult:
    """A flood of never-seen series beside established ones, through the detect core."""
    rng = random.Random(seed)
    keys = [
        SeriesKey.of("http_request_duration_seconds", {"service": f"steady-{i}"})
        for i in range(established)
    ]
    spike_every = 97

    def steady_run(flood: bool) -> tuple[list[tuple[str, float]], DetectStage, float]:
        stage = DetectStage(DetectConfig(max_series=max_series))
        before = _rss_mib()
        peak = before
        found: list[tuple[str, float]] = []
        flood_per_step = new_series // 400 if flood else 0
        serial = 0
        for step in range(400):
            ts = 1_795_683_600.0 + step * 10
            for i, key in enumerate(keys):
                value = 0.2 * (1 + rng.gauss(0, 0.05)) * (8 if step % spike_every == 50 else 1)
                anomaly = stage.observe(MetricPoint(key, value, ts + i * 1e-3))
                if anomaly is not None:
                    found.append((key.id, anomaly.ts))
            for _ in range(flood_per_step):
                serial += 1
                stage.observe(
                    MetricPoint(SeriesKey.of("flood_metric", {"id": str(serial)}), 1.0, ts + 5)
                )
            if step % 50 == 0:
                peak = max(peak, _rss_mib())
        return found, stage, max(peak, _rss_mib()) - before

    state = rng.getstate()
    quiet, _, _ = steady_run(flood=False)
    rng.setstate(state)
    flooded, stage, grew = steady_run(flood=True)
    evicted = stage.stats.evicted["lru"] + stage.stats.evicted["ttl"]
    return FaultResult(
        fault=f"cardinality flood: {new_series:,} new series, max_series {max_series:,}",
        events_in=stage.stats.points,
        pages_expected=len(quiet),
        pages_delivered=len(set(flooded) & set(quiet)),
        duplicates=0,
        lost=len(set(quiet) ^ set(flooded)),
        recovery_s=None,
        note=f"established-series anomalies compared; {evicted:,} evicted; "
        f"{stage.series_tracked:,} tracked; RSS grew {grew:.0f} MiB",
    )
