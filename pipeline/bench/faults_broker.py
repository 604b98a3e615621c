"""`bench faults` row where the broker goes away: a loopback proxy cut and restored."""

from __future__ import annotations

import asyncio
import time

from pipeline.bench.faults import FaultResult, _compare, _detect, _points
from pipeline.broker import EmbeddedBroker
from pipeline.harness import (
    ROUTING_KEY,
    Message,
    create_topics,
    expected_pages,
    fault_config,
    messages,
    produce,
    wait_for,
)
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.worker import Worker


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
