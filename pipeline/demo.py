"""`quietpager demo`: embedded broker, synthetic agent, the worker and a local webhook receiver.

Everything runs in this process on loopback; it ends with a one-screen report of what was
injected, what paged, and what was suppressed and why.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from pipeline.broker import EmbeddedBroker
from pipeline.config import Config, parse_config
from pipeline.correlate.incidents import Decision
from pipeline.kafka import client_options, ensure_topics, make_producer
from pipeline.metrics import Metrics
from pipeline.notify.sink import PAGERDUTY_PATH, WebhookSink
from pipeline.simulate import Scenario, affected_services, generate
from pipeline.timeutil import format_timestamp
from pipeline.worker import DetectRunner, Worker

DEMO_ROUTING_KEY = "demo-routing-key-not-a-secret"

#: Malformed messages the agent slips in, to show the DLQ at work.
BAD_MESSAGES = (
    b"this is not json",
    b'{"name": "http_request_duration_seconds", "value": "fast", "ts": 1795683600}',
    b'{"name": "cpu_utilization", "value": 0.5}',
)


def demo_config(bootstrap: str, sink_url: str, scenario: Scenario) -> Config:
    """The embedded default: the scenario's topology, one PagerDuty-style receiver on the sink."""
    return parse_config(
        {
            # Short group sessions: the embedded broker holds a join for half the session.
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_prefix": "quietpager-demo",
                "session_timeout": "2s",
                "heartbeat_interval": "500ms",
            },
            "topics": {"partitions": 3},
            "detect": {"warmup_points": 30, "tick_every": "10s"},
            "correlate": {"group_window": "5m", "hold_for": "60s", "resolve_after": "3m"},
            "topology": scenario.topology,
            "receivers": [
                {
                    "name": "oncall",
                    "type": "pagerduty",
                    "url": f"{sink_url}{PAGERDUTY_PATH}",
                    "routing_key": {"env": "QUIETPAGER_DEMO_ROUTING_KEY"},
                },
            ],
            "route": {"receivers": ["oncall"]},
            "worker": {"shutdown_timeout": "5s", "idle_advance": "2s"},
        },
        "<demo>",
    )


@dataclass(slots=True)
class DemoReport:
    """What the demo saw, for the final screen and for tests."""

    scenario: Scenario
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    events_in: int = 0
    anomalies: int = 0
    dlq: int = 0
    elapsed_s: float = 0.0

    @property
    def triggers(self) -> list[dict[str, Any]]:
        """Trigger bodies the receiver got."""
        return [b for _, b in self.received if b.get("event_action") == "trigger"]

    @property
    def named_roots(self) -> set[str]:
        """The suspected root causes the triggers named."""
        return {str((t.get("payload") or {}).get("component")) for t in self.triggers}

    @property
    def root_cause_correct(self) -> bool:
        """Every trigger named an injected fault's root, and every fault was named."""
        return self.named_roots == {fault.root for fault in self.scenario.faults}

    @property
    def resolves(self) -> list[dict[str, Any]]:
        """Resolve bodies the receiver got."""
        return [b for _, b in self.received if b.get("event_action") == "resolve"]


def _summed(metrics: Metrics, family: str) -> float:
    total = 0.0
    for metric in metrics.registry.collect():
        if metric.name == family:
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def _live_table(metrics: Metrics, report: DemoReport, phase: str) -> Table:
    table = Table(title=f"quietpager demo — {phase}", expand=False)
    for column in ("events in", "anomalies", "alerts folded", "suppressed", "DLQ", "pages sent"):
        table.add_column(column, justify="right")
    folded = sum(n for (kind, _), n in report.decisions.items() if kind == "fold")
    suppressed = sum(n for (kind, _), n in report.decisions.items() if kind == "suppress")
    table.add_row(
        f"{_summed(metrics, 'quietpager_events_in'):.0f}",
        f"{_summed(metrics, 'quietpager_anomalies'):.0f}",
        str(folded),
        str(suppressed),
        f"{_summed(metrics, 'quietpager_dlq_records'):.0f}",
        f"{_summed(metrics, 'quietpager_pages_sent'):.0f}",
    )
    return table


def _page_line(body: dict[str, Any]) -> str:
    payload = body.get("payload") or {}
    action = body.get("event_action", "?")
    text = payload.get("summary", "") if action == "trigger" else "incident over"
    return f"[bold]{action.upper():8}[/bold] {body.get('dedup_key')}  {text}"


async def run_demo(
    console: Console | None = None,
    scenario: Scenario | None = None,
    pace_s: float = 20.0,
    deadline_s: float = 55.0,
) -> DemoReport:
    """Run the whole demo and return what happened; `pace_s` spreads the agent over wall time."""
    import os

    console = console or Console()
    scenario = scenario or Scenario()
    report = DemoReport(scenario)
    started = time.monotonic()
    os.environ.setdefault("QUIETPAGER_DEMO_ROUTING_KEY", DEMO_ROUTING_KEY)

    def on_receive(path: str, body: dict[str, Any]) -> None:
        console.print(_page_line(body))

    def on_decision(decision: Decision) -> None:
        report.decisions[(decision.kind, decision.reason)] += 1

    broker = EmbeddedBroker()
    await broker.astart()
    sink = WebhookSink(on_receive=on_receive)
    await sink.start()
    try:
        config = demo_config(broker.bootstrap, sink.url, scenario)
        metrics = Metrics.create()
        worker = Worker(
            config, metrics, routing_keys={"oncall": DEMO_ROUTING_KEY}, on_decision=on_decision
        )
        stop = asyncio.Event()
        options = client_options(config.kafka)
        topics = config.topics
        await ensure_topics(
            options,
            dict.fromkeys(
                [topics.metrics, topics.logs, topics.anomalies, topics.pages, topics.dlq],
                topics.partitions,
            ),
        )
        worker_task = asyncio.create_task(worker.run(stop))
        producer = make_producer(options)
        await producer.start()
        with Live(
            _live_table(metrics, report, "starting"),
            console=console,
            refresh_per_second=8,
            transient=False,
        ) as live:
            try:
                await _wait_ready(worker, worker_task, deadline=15.0)
                await _produce(producer, scenario, topics.metrics, pace_s, live, metrics, report)
                await _settle(worker, sink, report, started + deadline_s, live, metrics)
            finally:
                live.update(_live_table(metrics, report, "done"))
                await producer.stop()
                stop.set()
                await worker_task
        if not console.is_terminal:
            console.line()  # Live ends its last frame without a newline when not on a terminal
        report.received = list(sink.received)
        report.events_in = int(_summed(metrics, "quietpager_events_in"))
        report.anomalies = int(_summed(metrics, "quietpager_anomalies"))
        report.dlq = int(_summed(metrics, "quietpager_dlq_records"))
    finally:
        await sink.stop()
        await broker.astop()
    report.elapsed_s = time.monotonic() - started
    console.print(render_report(report))
    return report


async def _wait_ready(worker: Worker, task: asyncio.Task[None], deadline: float) -> None:
    limit = time.monotonic() + deadline
    while not worker.ready:
        if task.done():
            task.result()
            raise RuntimeError("worker stopped before it was ready")
        if time.monotonic() > limit:
            raise TimeoutError("worker did not become ready")
        await asyncio.sleep(0.05)


async def _produce(
    producer: Any,
    scenario: Scenario,
    topic: str,
    pace_s: float,
    live: Live,
    metrics: Metrics,
    report: DemoReport,
) -> None:
    step_pause = pace_s / max(1, scenario.steps)
    bad_at = {scenario.steps // 4 + i * 7: bad for i, bad in enumerate(BAD_MESSAGES)}
    for step, (_, points) in enumerate(generate(scenario)):
        by_service: dict[str, list[dict[str, Any]]] = {}
        for point in points:
            by_service.setdefault(point["labels"]["service"], []).append(point)
        for service, batch in by_service.items():
            # Agents batch: one message per service and step, keyed by service.
            await producer.send(topic, orjson.dumps(batch), key=service.encode())
        if step in bad_at:
            await producer.send(topic, bad_at[step], key=b"broken-agent")
        if step % 4 == 0:
            await producer.flush()
            live.update(_live_table(metrics, report, f"agent at step {step}/{scenario.steps}"))
        await asyncio.sleep(step_pause)
    await producer.flush()


async def _settle(
    worker: Worker,
    sink: WebhookSink,
    report: DemoReport,
    deadline: float,
    live: Live,
    metrics: Metrics,
) -> None:
    """Wait until detect has seen the last step and every page decision has been delivered."""
    last_ts = report.scenario.start + (report.scenario.steps - 1) * report.scenario.step_s
    detect = next(r for r in worker.runners if isinstance(r, DetectRunner))
    while time.monotonic() < deadline:
        live.update(_live_table(metrics, report, "draining"))
        decided = sum(n for (kind, _), n in report.decisions.items() if kind == "page")
        if detect.core.watermark >= last_ts and len(sink.received) >= decided:
            await asyncio.sleep(0.5)
            decided = sum(n for (kind, _), n in report.decisions.items() if kind == "page")
            if len(sink.received) >= decided:
                return
        await asyncio.sleep(0.1)


def render_report(report: DemoReport) -> Panel:
    """The one-screen summary at the end of the demo."""
    scenario = report.scenario
    lines: list[Any] = []
    injected = Table(title="Injected", show_header=True)
    injected.add_column("what")
    injected.add_column("service")
    injected.add_column("from")
    injected.add_column("reaches")
    for fault in scenario.faults:
        reach = affected_services(scenario, fault)
        injected.add_row(
            "fault (root cause)",
            fault.root,
            format_timestamp(scenario.start + fault.onset_s)[11:19],
            ", ".join(s for s in sorted(reach, key=reach.__getitem__) if s != fault.root),
        )
    for blip in scenario.blips:
        injected.add_row(
            f"blip ({blip.duration_s:.0f}s)",
            blip.service,
            format_timestamp(scenario.start + blip.onset_s)[11:19],
            "-",
        )
    lines.append(injected)

    paged = Table(title="Paged", show_header=True)
    for column in ("action", "dedup_key", "suspected root", "summary"):
        paged.add_column(column)
    for _, body in report.received:
        payload = body.get("payload") or {}
        paged.add_row(
            body.get("event_action", "?"),
            str(body.get("dedup_key")),
            str(payload.get("component", "")),
            str(payload.get("summary", ""))[:70],
        )
    lines.append(paged)

    suppressed = Table(title="Folded or suppressed, by reason", show_header=True)
    suppressed.add_column("decision")
    suppressed.add_column("reason")
    suppressed.add_column("count", justify="right")
    for (kind, reason), count in sorted(report.decisions.items()):
        if kind != "page":
            suppressed.add_row(kind, reason, str(count))
    lines.append(suppressed)

    verdict = (
        f"events in {report.events_in}, anomalies {report.anomalies}, DLQ {report.dlq}; "
        f"{len(report.triggers)} trigger(s), {len(report.resolves)} resolve(s) for "
        f"{len(scenario.faults)} injected incident(s); root cause "
        + (
            "named correctly"
            if report.root_cause_correct
            else f"named {sorted(report.named_roots)}"
        )
        + f"; {report.elapsed_s:.1f}s"
    )
    lines.append(verdict)
    return Panel(Group(*lines), title="quietpager demo report")
