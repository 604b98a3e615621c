"""`quietpager bench faults`: break things for real and count what was lost or doubled.

Each fault runs the shipped worker against a real broker (the embedded one unless a
bootstrap is given) and a real webhook receiver on loopback, and compares the pages
delivered with what `replay` (the same cores, offline) says an uninterrupted run sends.
The test suite runs the same functions on shorter streams.
"""

from __future__ import annotations

import asyncio
import random
import resource
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from rich.console import Console
from rich.table import Table

from pipeline.broker import EmbeddedBroker
from pipeline.config import Config, DetectConfig, parse_config
from pipeline.detect import DetectStage
from pipeline.harness import (
    FAULT_SCENARIO,
    ROUTING_KEY,
    ROUTING_KEY_ENV,
    Message,
    PageId,
    create_topics,
    detect_runner,
    expected_pages,
    fault_config,
    messages,
    point_count,
    produce,
    read_topic,
    received_pages,
    spawn_worker,
    wait_for,
    worker_command,
)
from pipeline.ingest import REJECT_REASONS, decode_message
from pipeline.metrics import Metrics
from pipeline.model import MetricPoint, SeriesKey
from pipeline.notify.sink import WebhookSink
from pipeline.worker import Worker

# The helpers moved to pipeline.harness (the tests use them too) stay importable from here
# for the faults_* modules.
__all__ = [
    "FAULT_SCENARIO",
    "ROUTING_KEY",
    "ROUTING_KEY_ENV",
    "FaultResult",
    "LoopbackProxy",
    "Message",
    "PageId",
    "anomaly_scores",
    "broker_cut",
    "cardinality_flood",
    "create_topics",
    "detect_runner",
    "expected_pages",
    "fault_config",
    "fuzz_decoder",
    "messages",
    "point_count",
    "process_restart",
    "produce",
    "read_topic",
    "rebalance",
    "received_pages",
    "receiver_down",
    "run_faults",
    "spawn_worker",
    "wait_for",
    "webhook_outage",
    "worker_command",
]

# The names the faults_* modules import.
_points = point_count
_detect = detect_runner


@dataclass(frozen=True, slots=True)
class FaultResult:
    """One row of the fault table."""

    fault: str
    events_in: int
    pages_expected: int
    pages_delivered: int
    duplicates: int
    lost: int
    recovery_s: float | None
    note: str = ""


def _compare(
    fault: str,
    events: int,
    want: list[PageId],
    sink: WebhookSink,
    recovery_s: float | None,
    note: str = "",
) -> FaultResult:
    got = [(b["event_action"], b["dedup_key"]) for _, b in sink.received]
    return FaultResult(
        fault=fault,
        events_in=events,
        pages_expected=len(want),
        pages_delivered=len(set(got)),
        duplicates=len(got) - len(set(got)),
        lost=len(set(want) - set(got)),
        recovery_s=recovery_s,
        note=note
        + (f"; unexpected {sorted(set(got) - set(want))}" if set(got) - set(want) else ""),
    )


async def process_restart(
    bootstrap: str,
    workdir: Path,
    how: signal.Signals,
    stream: list[Message] | None = None,
    tansu: bool = True,
) -> FaultResult:
    """A worker process dies (SIGKILL) or is stopped (SIGTERM) mid-stream; another replaces it."""
    stream = stream if stream is not None else messages()
    sink = WebhookSink()
    await sink.start()
    try:
        config = fault_config(bootstrap, sink.pagerduty_url, tansu=tansu)
        want = expected_pages(config, stream)
        await create_topics(config)
        command = worker_command(config, workdir)
        first = await spawn_worker(command)
        # Two thirds of the stream: past the trigger, before the incident can resolve.
        split = len(stream) * 2 // 3
        try:
            await produce(config, stream[:split], pause_every=40)
            await wait_for(lambda: len(sink.received) >= 1, 90, "the first page")
            stopped_at = time.monotonic()
            first.send_signal(how)
            await asyncio.wait_for(first.wait(), 30)
            exit_s = time.monotonic() - stopped_at
            await produce(config, stream[split:])
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        restarted = time.monotonic()
        second = await spawn_worker(command)
        try:
            wanted = set(want)
            await wait_for(
                lambda: {(b["event_action"], b["dedup_key"]) for _, b in sink.received} >= wanted,
                120,
                "every page",
            )
            recovery = time.monotonic() - restarted
            await asyncio.sleep(1.0)  # anything extra would arrive now
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)
        name = "worker killed (SIGKILL)" if how == signal.SIGKILL else "worker stopped (SIGTERM)"
        return _compare(
            name,
            _points(stream),
            want,
            sink,
            recovery,
            f"first worker exited {exit_s:.1f}s after the signal, code {first.returncode}",
        )
    finally:
        await sink.stop()


def anomaly_scores(records: list[ConsumerRecord]) -> list[tuple[str, float, float]]:
    """(series, event time, score) of every anomaly record, sorted."""
    out = []
    for record in records:
        data = orjson.loads(record.value)
        if data["kind"] == "anomaly":
            series = SeriesKey.of(data["name"], data["labels"]).id
            out.append((series, float(data["ts"]), float(data["score"])))
    return sorted(out)


async def _run_detect_until(worker: Worker, points: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_for(
            lambda: bool(worker.runners) and _detect(worker).core.stats.points >= points,
            120,
            "the detect stage",
        )
    finally:
        stop.set()
        await task


async def rebalance(
    bootstrap: str,
    stream: list[Message] | None = None,
    tansu: bool = True,
    checkpoints: bool = True,
) -> FaultResult:
    """Two detect workers share a stream; one leaves halfway. Scores must match one worker's."""
    stream = stream if stream is not None else messages()
    total = _points(stream)
    url = "http://127.0.0.1:9/unused"
    solo_config = fault_config(bootstrap, url, partitions=2, tansu=tansu)
    await create_topics(solo_config)
    await produce(solo_config, stream)
    await _run_detect_until(Worker(solo_config, Metrics.create(), stages=("detect",)), total)
    expected = anomaly_scores(await read_topic(solo_config, solo_config.topics.anomalies))

    config = fault_config(bootstrap, url, partitions=2, tansu=tansu, checkpoints=checkpoints)
    await create_topics(config)
    workers = [Worker(config, Metrics.create(), stages=("detect",)) for _ in range(2)]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(w.run(s)) for w, s in zip(workers, stops, strict=True)]

    def owns(worker: Worker, count: int) -> bool:
        consumer = _detect(worker).consumer if worker.runners else None
        return consumer is not None and count == sum(
            tp.topic == config.topics.metrics for tp in consumer.assignment()
        )

    def done(points: int) -> bool:
        return sum(_detect(w).core.stats.points for w in workers) >= points

    try:
        await wait_for(lambda: owns(workers[0], 1) and owns(workers[1], 1), 30, "both to join")
        half = len(stream) // 2
        await produce(config, stream[:half])
        await wait_for(lambda: done(_points(stream[:half])), 60, "the first half")
        left = time.monotonic()
        stops[0].set()  # it checkpoints and commits as its partitions are revoked
        await tasks[0]
        await wait_for(lambda: owns(workers[1], 2), 30, "the survivor to take over")
        recovery = time.monotonic() - left
        await produce(config, stream[half:])
        await wait_for(lambda: done(total), 60, "the second half")
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
    got = anomaly_scores(await read_topic(config, config.topics.anomalies))
    restored = (
        workers[1].metrics.registry.get_sample_value(
            "quietpager_state_restored_total", {"stage": "detect"}
        )
        or 0
    )
    missing = len(set(expected) - set(got))
    return FaultResult(
        fault="rebalance: one of two workers leaves",
        events_in=total,
        pages_expected=len(expected),
        pages_delivered=len(set(got)),
        duplicates=len(got) - len(set(got)),
        lost=missing,
        recovery_s=recovery,
        note=f"anomalies compared, not pages; {restored:.0f} series models restored; scores "
        + ("identical" if got == expected else "differ"),
    )


async def _start_on(
    config: Config, stream: list[Message]
) -> tuple[list[PageId], Metrics, asyncio.Event, asyncio.Task[None]]:
    """The pages an uninterrupted run sends; then the topics created, the stream produced and
    a worker started on it (its metrics, the event that stops it, its task)."""
    want = expected_pages(config, stream)
    await create_topics(config)
    await produce(config, stream)
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})
    stop = asyncio.Event()
    return want, metrics, stop, asyncio.create_task(worker.run(stop))


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


async def run_faults(
    bootstrap: str | None = None,
    workdir: Path | None = None,
    console: Console | None = None,
    fuzz: int = 100_000,
    flood: int = 1_000_000,
    chaos_minutes: float = 5.0,
    chaos_kill_every: tuple[float, float] = (20.0, 40.0),
) -> list[FaultResult]:
    """Every fault in one go (the chaos row for `chaos_minutes`, none at 0); prints the table."""
    import tempfile

    from pipeline.bench.faults_chaos import chaos
    from pipeline.bench.faults_clock import skewed_clock  # it imports this module
    from pipeline.bench.faults_input import oversized_input
    from pipeline.bench.faults_notify import slow_receiver
    from pipeline.bench.faults_silences import poison_silence
    from pipeline.bench.faults_state import poison_state_record, truncated_correlate_checkpoint

    console = console or Console(width=max(Console().width, 160))
    results: list[FaultResult] = []
    broker = None
    if bootstrap is None:
        broker = EmbeddedBroker()
        await broker.astart()
        bootstrap = broker.bootstrap
    tansu = broker is not None
    with tempfile.TemporaryDirectory() as tmp:
        where = workdir or Path(tmp)
        try:
            faults: list[tuple[str, Callable[[], Coroutine[Any, Any, FaultResult]]]] = [
                ("kill", lambda: process_restart(bootstrap, where, signal.SIGKILL, tansu=tansu)),
                ("term", lambda: process_restart(bootstrap, where, signal.SIGTERM, tansu=tansu)),
                ("rebalance", lambda: rebalance(bootstrap, tansu=tansu)),
                ("outage", lambda: webhook_outage(bootstrap, tansu=tansu)),
                ("receiver down", lambda: receiver_down(bootstrap, tansu=tansu)),
                ("poison state", lambda: poison_state_record(bootstrap, tansu=tansu)),
                ("truncated", lambda: truncated_correlate_checkpoint(bootstrap, tansu=tansu)),
                ("poison silence", lambda: poison_silence(bootstrap, tansu=tansu)),
                ("skewed clock", lambda: skewed_clock(bootstrap, tansu=tansu)),
                ("slow receiver", lambda: slow_receiver(bootstrap, tansu=tansu)),
                ("oversized input", lambda: oversized_input(bootstrap, tansu=tansu)),
            ]
            if chaos_minutes > 0:
                faults.append(
                    (
                        "chaos",
                        lambda: chaos(
                            bootstrap, where, chaos_minutes, chaos_kill_every, tansu=tansu
                        ),
                    )
                )
            if tansu:  # the cut needs a broker that advertises the proxy
                faults.append(("broker cut", lambda: broker_cut()))
            for name, run in faults:
                console.print(f"fault: {name} …")
                results.append(await run())
        finally:
            if broker is not None:
                await broker.astop()
    console.print("fault: fuzz …")
    results.append(fuzz_decoder(fuzz))
    console.print("fault: flood …")
    results.append(cardinality_flood(flood))
    table = Table(title="bench faults")
    for column in (
        "fault",
        "events in",
        "expected",
        "delivered",
        "duplicates",
        "lost",
        "recovery",
        "note",
    ):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(
            r.fault,
            f"{r.events_in:,}",
            str(r.pages_expected),
            str(r.pages_delivered),
            str(r.duplicates),
            str(r.lost),
            "-" if r.recovery_s is None else f"{r.recovery_s:.1f}s",
            r.note,
        )
    console.print(table)
    return results


class LoopbackProxy:
    """A TCP proxy on loopback that a test can cut and restore, to take the broker away."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen (again, on the same port once one was picked)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        if self._server is None:  # cut while this connection was being set up
            writer.close()
            up_writer.close()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()
            self._writers.discard(sink)


async def broker_cut(stream: list[Message] | None = None, cut_s: float = 6.0) -> FaultResult:
    """The worker's connection to the broker is cut for `cut_s` and restored, mid-stream.

    Needs the embedded broker: it must advertise the proxy's address, so that every
    connection (not only the bootstrap) goes through the cut.
    """
    from pipeline.broker import free_port

    stream = stream if stream is not None else messages()
    proxy_port = free_port()
    broker = EmbeddedBroker(advertised_port=proxy_port)
    await broker.astart()
    proxy = LoopbackProxy(int(broker.bootstrap.rsplit(":", 1)[1]), proxy_port)
    await proxy.start()
    sink = WebhookSink()
    await sink.start()
    bootstrap = f"127.0.0.1:{proxy_port}"
    try:
        config = fault_config(bootstrap, sink.pagerduty_url, probe_every="500ms")
        want = expected_pages(config, stream)
        await create_topics(config)
        worker = Worker(config, Metrics.create(), routing_keys={"oncall": ROUTING_KEY})
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await wait_for(lambda: worker.ready, 30, "the worker to be ready")
            half = len(stream) // 2
            await produce(config, stream[:half])
            await wait_for(
                lambda: (
                    bool(worker.runners)
                    and _detect(worker).core.stats.points >= _points(stream[:half])
                ),
                60,
                "the first half",
            )
            await proxy.cut()
            try:
                await wait_for(lambda: not worker.ready, 30, "the worker to report not ready")
            except TimeoutError as exc:
                stages = [(r.name, r.status.connected) for r in worker.runners]
                raise TimeoutError(
                    f"{exc}: broker_reachable={worker.broker_reachable}, stages={stages}, "
                    f"proxy connections={len(proxy._writers)}"
                ) from None
            await asyncio.sleep(cut_s)
            await proxy.start()
            restored = time.monotonic()
            try:
                await wait_for(lambda: worker.ready, 60, "the worker to be ready again")
            except TimeoutError as exc:
                status = [(r.name, r.status.connected, r.status.last_error) for r in worker.runners]
                raise TimeoutError(
                    f"{exc}: broker_reachable={worker.broker_reachable}, stages={status}"
                ) from None
            ready_again = time.monotonic() - restored
            await produce(config, stream[half:])
            await wait_for(
                lambda: (
                    {(b["event_action"], b["dedup_key"]) for _, b in sink.received} >= set(want)
                ),
                90,
                "every page",
            )
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await task
        return _compare(
            f"broker connection cut for {cut_s:g}s",
            _points(stream),
            want,
            sink,
            ready_again,
            f"not ready during the cut; ready again after {ready_again:.1f}s",
        )
    finally:
        await sink.stop()
        await proxy.cut()
        await broker.astop()
