"""`quietpager bench logs`: template mining accuracy, alert detection and speed on Loghub.

Runs the shipped log path (`pipeline.logsignals`) over the Loghub 2k samples, laid out as
`DIR/<System>/<System>_2k.log` with ground truth in `<System>_2k.log_structured.csv`:

- parsing: each system's lines through one Drain3 template miner, scored by grouping accuracy
  (Zhu et al., "Tools and Benchmarks for Automated Log Parsing", ICSE-SEIP 2019: a line is
  right when the set of lines in its predicted group equals the set in its true group). The
  line content is the structured file's `Content` column, so header parsing (timestamps,
  hosts, levels) is kept out of what is measured: it is the agent's job, not the miner's.
  Every system uses the same miner settings; only the site masks in `SYSTEM_MASKS` differ.
- detection: BGL's labelled lines (first field `-` is normal, anything else an alert) through
  `LogStage`, a line flagged when it raised an anomaly of its own template or of its
  service's error rate; also per 1-minute window.
- speed: lines per second of `LogStage.observe` (and of decode + observe) on one core.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.config import DetectConfig, LogMaskRule, LogsConfig
from pipeline.errors import QuietpagerError
from pipeline.ingest import decode_message
from pipeline.logsignals import ERROR_RANK, LEVEL_RANK, LogStage, TemplateSet, miner_config
from pipeline.model import LogRecord

#: The 16 Loghub systems with a labelled 2k sample.
SYSTEMS: tuple[str, ...] = (
    "Android",
    "Apache",
    "BGL",
    "HDFS",
    "HPC",
    "Hadoop",
    "HealthApp",
    "Linux",
    "Mac",
    "OpenSSH",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Thunderbird",
    "Windows",
    "Zookeeper",
)

#: Drain's published mean grouping accuracy over these 16 systems (Zhu et al. 2019, table).
DRAIN_PUBLISHED_MEAN = 0.865


def _masks(*rules: tuple[str, str]) -> tuple[LogMaskRule, ...]:
    return tuple(LogMaskRule(pattern=pattern, mask_with=name) for name, pattern in rules)


#: Site masks per system, on top of the defaults (what a deployment would put in
#: `logs.masking`); every other setting is the same for all systems.
SYSTEM_MASKS: dict[str, tuple[LogMaskRule, ...]] = {
    "BGL": _masks(("CORE", r"core\.\d+")),
    "Proxifier": _masks(
        ("TARGET", r"^\S+:\d+"),
        ("SIZE", r"\d+ bytes(?: \([\d.]+ [KMGT]?B\))?"),
        ("TIME", r"\d{2}:\d{2}(?::\d{2})?|<1 sec"),
    ),
    # RE2 (as every `logs.masking` pattern): no lookaround, so JOB stops before a colon that
    # ends the token or precedes a space, and PATH takes its `path:` prefix with it.
    "Mac": _masks(
        ("JOB", r"^com\.apple\.(?:[^:\s]|:\S)+"),
        ("FILE", r"\[\d{4}-\d{2}-\d{2}_[^\]]*\][^,\s]*"),
        ("PATH", r"path:/\S+"),
    ),
}


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Grouping accuracy of one system."""

    system: str
    lines: int
    true_templates: int
    mined_templates: int
    accuracy: float


@dataclass(frozen=True, slots=True)
class DetectionResult:
    """Precision and recall of flagging BGL alerts, by line and by 1-minute window."""

    lines: int
    alert_lines: int
    flagged_lines: int
    line_precision: float
    line_recall: float
    windows: int
    alert_windows: int
    flagged_windows: int
    window_precision: float
    window_recall: float

    @property
    def line_f1(self) -> float:
        """Harmonic mean of the line precision and recall."""
        return _f1(self.line_precision, self.line_recall)

    @property
    def window_f1(self) -> float:
        """Harmonic mean of the window precision and recall."""
        return _f1(self.window_precision, self.window_recall)


@dataclass(frozen=True, slots=True)
class SpeedResult:
    """Lines per second of the log path on one core."""

    lines: int
    stage_lines_per_s: float
    decode_and_stage_lines_per_s: float


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Share of lines whose predicted group holds exactly the lines of their true group.

    >>> grouping_accuracy(["a", "a", "b", "c"], [1, 1, 2, 2])
    0.5
    """
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} lines")
    if not truth:
        return 0.0
    members: defaultdict[Hashable, list[int]] = defaultdict(list)
    for line, group in enumerate(predicted):
        members[group].append(line)
    true_sizes = Counter(truth)
    correct = 0
    for lines in members.values():
        true_groups = {truth[line] for line in lines}
        if len(true_groups) == 1 and true_sizes[next(iter(true_groups))] == len(lines):
            correct += len(lines)
    return correct / len(truth)


def structured_rows(data: Path, system: str) -> list[dict[str, str]]:
    """The rows of a system's `_2k.log_structured.csv`."""
    path = data / system / f"{system}_2k.log_structured.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def parse_system(data: Path, system: str, logs: LogsConfig | None = None) -> ParseResult:
    """Mine one system's lines with one miner and score the grouping."""
    logs = logs or LogsConfig()
    rows = structured_rows(data, system)
    masks = (*SYSTEM_MASKS.get(system, ()), *logs.masking)
    templates = TemplateSet(miner_config(logs.similarity, logs.depth, None, masks))
    predicted = [templates.mine(row["Content"])[0] for row in rows]
    truth = [row["EventId"] for row in rows]
    return ParseResult(
        system=system,
        lines=len(rows),
        true_templates=len(set(truth)),
        mined_templates=len(set(predicted)),
        accuracy=grouping_accuracy(predicted, truth),
    )


_BGL_LEVELS = {"FAILURE": "error", "SEVERE": "error", "FATAL": "fatal", "WARNING": "warning"}


def bgl_records(data: Path) -> tuple[list[LogRecord], list[bool]]:
    """BGL's sample as log records of one service, with whether each line is an alert."""
    rows = structured_rows(data, "BGL")
    records = [
        LogRecord(
            ts=float(row["Timestamp"]),
            level=_BGL_LEVELS.get(row["Level"].upper(), row["Level"].lower()),
            message=row["Content"],
            labels=(("service", "bgl"),),
        )
        for row in rows
    ]
    return records, [row["Label"] != "-" for row in rows]


#: BGL_2k samples 213 days in 2,000 lines (gaps of days): services must outlive the gaps.
BGL_SERVICE_TTL = 400 * 86400.0


def detect_bgl(
    data: Path, logs: LogsConfig | None = None, window_s: float = 60.0
) -> DetectionResult:
    """Flag BGL lines with the log stage; precision and recall against the alert labels."""
    logs = logs or LogsConfig(service_ttl=BGL_SERVICE_TTL)
    stage = LogStage(
        logs.model_copy(update={"masking": [*SYSTEM_MASKS.get("BGL", ()), *logs.masking]}),
        DetectConfig(),
    )
    records, alerts = bgl_records(data)
    flagged: list[bool] = []
    flagged_windows: set[int] = set()
    # A line is flagged while its template, or its service's error rate for an error line,
    # has an anomaly reported within the last bucket: one report covers the lines after it.
    reported: dict[str, float] = {}
    for record in records:
        for anomaly in stage.observe(record):
            kind = anomaly.detail.get("kind")
            if kind == "template_silent":
                continue  # a stopped heartbeat says nothing about the lines that did come
            flagged_windows.add(math.floor(anomaly.ts / window_s))
            key = "errors" if kind == "error_rate" else str(anomaly.detail.get("template_id"))
            reported[key] = anomaly.ts
        keys = [str(stage.last_template)]
        if LEVEL_RANK.get(record.level, 2) >= ERROR_RANK:
            keys.append("errors")
        flagged.append(any(record.ts - reported.get(key, -math.inf) <= logs.bucket for key in keys))
    alert_windows = {
        math.floor(r.ts / window_s) for r, alert in zip(records, alerts, strict=True) if alert
    }
    windows = {math.floor(r.ts / window_s) for r in records}
    hits = sum(1 for f, a in zip(flagged, alerts, strict=True) if f and a)
    window_hits = len(flagged_windows & alert_windows)
    return DetectionResult(
        lines=len(records),
        alert_lines=sum(alerts),
        flagged_lines=sum(flagged),
        line_precision=hits / sum(flagged) if any(flagged) else 0.0,
        line_recall=hits / sum(alerts) if any(alerts) else 0.0,
        windows=len(windows),
        alert_windows=len(alert_windows),
        flagged_windows=len(flagged_windows),
        window_precision=window_hits / len(flagged_windows) if flagged_windows else 0.0,
        window_recall=window_hits / len(alert_windows) if alert_windows else 0.0,
    )


def level_baseline(data: Path, level: str = "fatal") -> tuple[float, float]:
    """Precision and recall of flagging every BGL line at `level` or above: no model at all."""
    records, alerts = bgl_records(data)
    floor = LEVEL_RANK[level]
    flagged = [LEVEL_RANK.get(r.level, 2) >= floor for r in records]
    hits = sum(1 for f, a in zip(flagged, alerts, strict=True) if f and a)
    precision = hits / sum(flagged) if any(flagged) else 0.0
    recall = hits / sum(alerts) if any(alerts) else 0.0
    return precision, recall


def measure_speed(
    data: Path, systems: Sequence[str] = SYSTEMS, rate_per_s: float = 100.0, repeats: int = 3
) -> SpeedResult:
    """Lines per second of the log stage over every system's lines, each with its site masks.

    Each system is one service of a fresh stage (its masks are its `logs.masking`), its lines
    spread over event time at `rate_per_s` so buckets open and close as in a live stream. A
    fresh stage starts with no templates, so template creation is part of the cost; lines
    that repeat once masked hit the miner's line cache, as they would live. Each system's
    time is the best of `repeats` runs, as other work on the machine only ever adds time.
    """
    start = 1_800_000_000.0
    lines = 0
    stage_s = 0.0
    both_s = 0.0
    for system in systems:
        config = LogsConfig(masking=list(SYSTEM_MASKS.get(system, ())))
        labels = (("service", system.lower()),)
        records = [
            LogRecord(
                start + index / rate_per_s, row.get("Level", "info").lower(), row["Content"], labels
            )
            for index, row in enumerate(structured_rows(data, system))
        ]
        messages = [
            orjson.dumps(
                {"ts": r.ts, "level": r.level, "message": r.message, "labels": dict(r.labels)}
            )
            for r in records
        ]
        best_stage = best_both = math.inf
        for _ in range(repeats):
            stage = LogStage(config, DetectConfig())
            started = time.perf_counter()
            for record in records:
                stage.observe(record)
            best_stage = min(best_stage, time.perf_counter() - started)
            stage = LogStage(config, DetectConfig())
            started = time.perf_counter()
            for message in messages:
                for record in decode_message(message, "logs").logs:
                    stage.observe(record)
            best_both = min(best_both, time.perf_counter() - started)
        stage_s += best_stage
        both_s += best_both
        lines += len(records)
    return SpeedResult(lines, lines / stage_s, lines / both_s)


def run_logs(data: Path, systems: Sequence[str] = SYSTEMS) -> list[ParseResult]:
    """Run the three measurements and print their tables."""
    for system in systems:
        path = data / system / f"{system}_2k.log_structured.csv"
        if not path.is_file():
            raise QuietpagerError(f"{data}: no Loghub checkout here (missing {path})")
    results = [parse_system(data, system) for system in systems]
    print("Template mining, grouping accuracy (Loghub 2k samples, Content column)")
    print(f"{'system':<12} {'lines':>6} {'true':>5} {'mined':>6} {'accuracy':>9}  site masks")
    for result in results:
        masks = ", ".join(rule.mask_with for rule in SYSTEM_MASKS.get(result.system, ())) or "-"
        print(
            f"{result.system:<12} {result.lines:>6} {result.true_templates:>5} "
            f"{result.mined_templates:>6} {result.accuracy:>9.3f}  {masks}"
        )
    mean = statistics.fmean(r.accuracy for r in results)
    print(f"{'mean':<32} {mean:>9.3f}  (Drain published: {DRAIN_PUBLISHED_MEAN})")
    print()
    if "BGL" in systems:
        found = detect_bgl(data)
        print("Detection on BGL_2k (alert = first field not '-')")
        header = ("unit", "total", "alerts", "flagged", "precision", "recall", "F1")
        print("{:<16} {:>6} {:>7} {:>8} {:>10} {:>7} {:>6}".format(*header))
        print(
            f"{'line':<16} {found.lines:>6} {found.alert_lines:>7} {found.flagged_lines:>8} "
            f"{found.line_precision:>10.3f} {found.line_recall:>7.3f} {found.line_f1:>6.3f}"
        )
        print(
            f"{'1-minute window':<16} {found.windows:>6} {found.alert_windows:>7} "
            f"{found.flagged_windows:>8} {found.window_precision:>10.3f} "
            f"{found.window_recall:>7.3f} {found.window_f1:>6.3f}"
        )
        precision, recall = level_baseline(data)
        print(
            f"{'level>=FATAL':<16} {'':>6} {'':>7} {'':>8} {precision:>10.3f} "
            f"{recall:>7.3f} {_f1(precision, recall):>6.3f}  (no model: context only)"
        )
        print()
    speed = measure_speed(data, systems)
    print(f"Speed, one core, {speed.lines} lines")
    print(f"{'LogStage.observe':<28} {speed.stage_lines_per_s:>10,.0f} lines/s")
    print(f"{'decode + LogStage.observe':<28} {speed.decode_and_stage_lines_per_s:>10,.0f} lines/s")
    return results
