"""Log signals: templates mined per service, counted in event-time buckets, scored into anomalies.

Pure and synchronous: event time comes with each record or with `advance(now)`. Each service
has its own Drain3 template miner (bounded by `max_templates_per_service`); each template's
line count per `bucket` is scored with the same River-based detector the metric series use.
What becomes an anomaly (the `kind` in its detail):

- `new_template`: a template first seen after the service's warm-up, at
  `new_template_min_level` or above. Score 1.0 at once, and again every `repeat_every` while
  it keeps appearing during its own warm-up, so a new failure that persists can page alone.
- `template_burst`: a known template at `burst_min_level` or above has a count in the open
  bucket that crosses its threshold (checked as lines arrive, so a burst is reported before
  its bucket ends).
- `error_rate`: the same for a service's error-level lines (error and above) as a whole.
- `template_silent`: a template present in most of the last `silence_window` buckets has been
  absent for the last `silence_after` (a heartbeat stopped), and its share of buckets present
  since first seen makes a gap that long unlikely by chance (`SILENCE_CHANCE`), so a line that
  comes now and then is no heartbeat; reported again every `repeat_every` as time advances
  until it returns or `silence_window` buckets pass.

Bursts and new templates of warning-or-above templates, and error rates, are the `errors`
signal; bursts of lower-level templates (when `burst_min_level` allows) are `traffic`, and so
are silences. Every anomaly's `detail` carries the template, up to `examples` recent lines
(secret-like values masked) and the counts (during, and the baseline per bucket before).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from drain3 import TemplateMiner  # type: ignore[import-untyped]
from drain3.drain import LogCluster, LogClusterCache, Node  # type: ignore[import-untyped]
from drain3.masking import AbstractMaskingInstruction  # type: ignore[import-untyped]
from drain3.template_miner_config import TemplateMinerConfig  # type: ignore[import-untyped]

from detectors.golden import GoldenSignalDetector, golden_for_signal
from pipeline.codec import (
    RecordRejected,
    decode,
    encode,
    pack_float,
    reading,
    unpack_bool,
    unpack_float,
    unpack_int,
    unpack_str,
)
from pipeline.config import DetectConfig, LogMaskRule, LogsConfig
from pipeline.model import Anomaly, LogRecord, SeriesKey, Signal
from pipeline.userregex import UserRegex

TEMPLATE_SERIES: Final = "log_template_rate"
ERROR_SERIES: Final = "log_error_rate"
#: The schema of the stage's state records; 2: the codec's explicit fields replace pickle.
SNAPSHOT_VERSION: Final = 2
#: Item names of the stage's state records: its own, and each service's after the prefix.
LOG_STAGE_RECORD: Final = "__log_stage__"
LOG_SERVICE_PREFIX: Final = "__log_stage__/"
#: Distinct raw lines per service remembered with their template, so repeats skip Drain.
LINE_CACHE_SIZE: Final = 1024
EXAMPLE_CHARS: Final = 300
# A template counts as steady when present in at least this share of its history buckets.
STEADY_SHARE: Final = 0.8
# ... and when, at its share of buckets present since first seen, a gap of `silence_after`
# buckets would come by chance at most this often: an intermittent template that happened to
# fill the window is not a heartbeat.
SILENCE_CHANCE: Final = 0.01

#: Severity order of the levels ingest accepts; unknown levels rank as info.
LEVEL_RANK: Final[dict[str, int]] = {
    "trace": 0,
    "debug": 1,
    "info": 2,
    "notice": 3,
    "warn": 4,
    "warning": 4,
    "error": 5,
    "err": 5,
    "critical": 6,
    "crit": 6,
    "fatal": 6,
    "alert": 7,
    "emerg": 8,
    "emergency": 8,
}
ERROR_RANK: Final = LEVEL_RANK["error"]
WARNING_RANK: Final = LEVEL_RANK["warning"]

#: Variables masked in every line before mining, in priority order: (mask name, pattern).
DEFAULT_MASKS: Final[tuple[tuple[str, str], ...]] = (
    ("UUID", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ("BLK", r"\bblk_-?\d+"),
    (
        "IP",
        r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"
        r"(?:,(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?)*(?![\w.])",
    ),
    ("NUM", r"(?<![\w.])0[xX][0-9a-fA-F]+(?![\w.])"),
    ("NUM", r"(?<![\w.-])(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{6,}(?![\w-])"),
    ("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:ms|us|ns|s|m|h|[KMGT]?B)?(?![\w.])"),
)

# Values that look like credentials are masked in example lines before they leave the stage.
_SECRET_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:(?:bearer|basic)\s+)?\S+"), r"\1<REDACTED>"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 <REDACTED>"),
    (
        re.compile(
            r"(?i)\b((?:[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
            r"access[_-]?key|private[_-]?key|credential|auth)[\w-]*)\s*[=:]\s*)"
            r"(?!<REDACTED>)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
        ),
        r"\1<REDACTED>",
    ),
    # The look-behind starts a scheme only where one can begin: without it every letter of a
    # long run was a start, each scanning the rest of the run (quadratic in the line).
    (
        re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"),
        r"\1<REDACTED>@",
    ),
    (re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]+"), "<REDACTED>"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "<REDACTED>"),
    (
        re.compile(r"\b(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Za-z])[A-Za-z0-9+/_-]{32,}=*"),
        "<REDACTED>",
    ),
)


#: How much of a line `redact_secrets` reads: what it shows, and as much again.
_REDACT_SPAN: Final = 2 * EXAMPLE_CHARS


def redact_secrets(line: str) -> str:
    """A log line fit to show in a page: credential-like values masked, length capped.

    >>> redact_secrets("login ok user=bob password=hunter2 token: abc.def")
    'login ok user=bob password=<REDACTED> token: <REDACTED>'
    >>> redact_secrets("GET https://admin:s3cret@db.internal/x Authorization: Bearer eyJabc.def")
    'GET https://<REDACTED>@db.internal/x Authorization: <REDACTED>'
    """
    # Only the start is shown, so only the start is searched: a line of a megabyte cost
    # minutes here. The margin keeps a secret that straddles the cut whole for its pattern.
    line = line[:_REDACT_SPAN]
    for pattern, replacement in _SECRET_PATTERNS:
        line = pattern.sub(replacement, line)
    if len(line) > EXAMPLE_CHARS:
        line = line[: EXAMPLE_CHARS - 1] + "…"
    return line


class CombinedMask(AbstractMaskingInstruction):  # type: ignore[misc]
    """Several masks applied in one regex pass (leftmost match, then the earlier mask wins)."""

    def __init__(self, masks: Iterable[tuple[str, str]]) -> None:
        masks = list(masks)
        super().__init__(masks[0][0] if masks else "")
        self.masks = masks
        self._names = {f"m{i}": name for i, (name, _) in enumerate(masks)}
        alternation = "|".join(f"(?P<m{i}>{pattern})" for i, (_, pattern) in enumerate(masks))
        self.regex = re.compile(alternation) if masks else None
        # Every default mask needs a digit: lines without one skip the regex entirely.
        self._needs_digit = re.compile(r"\d")

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        has_digit = self._needs_digit.search
        if self.regex is None or has_digit(content) is None:
            return content
        names = self._names

        def replace(match: re.Match[str]) -> str:
            return f"{mask_prefix}{names[match.lastgroup or '']}{mask_suffix}"

        # No mask spans whitespace, and Drain splits on it anyway: running the regex only
        # over the tokens that hold a digit is several times faster than over the line.
        sub = self.regex.sub
        tokens = content.split()
        for index, token in enumerate(tokens):
            if has_digit(token) is not None:
                tokens[index] = sub(replace, token)
        return " ".join(tokens)


class SiteMask(AbstractMaskingInstruction):  # type: ignore[misc]
    """A mask from `logs.masking`: the user's pattern runs on every line, so it runs on RE2
    (linear time whatever the pattern) instead of Drain3's `re`-based MaskingInstruction."""

    def __init__(self, pattern: str, mask_with: str) -> None:
        super().__init__(mask_with)
        self.regex = UserRegex(pattern)

    @property
    def pattern(self) -> str:
        """The user's pattern, as written."""
        return self.regex.pattern

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        return self.regex.sub(f"{mask_prefix}{self.mask_with}{mask_suffix}", content)


def miner_config(
    similarity: float = 0.7,
    depth: int = 5,
    max_clusters: int | None = 1000,
    extra_masks: Iterable[LogMaskRule] = (),
) -> TemplateMinerConfig:
    """A Drain3 configuration built in code (no ini file): site masks first, then the defaults."""
    config = TemplateMinerConfig()
    config.drain_sim_th = similarity
    config.drain_depth = depth
    config.drain_max_clusters = max_clusters
    config.drain_max_children = 100
    config.parametrize_numeric_tokens = True
    config.profiling_enabled = False
    config.masking_instructions = [
        *(SiteMask(rule.pattern, rule.mask_with) for rule in extra_masks),
        CombinedMask(DEFAULT_MASKS),
    ]
    return config


class TemplateSet:
    """One service's template miner: raw line in, template id out; state snapshots as bytes."""

    def __init__(self, config: TemplateMinerConfig) -> None:
        self.config = config
        self.miner = TemplateMiner(config=config)
        self._lines: OrderedDict[str, int] = OrderedDict()

    def mine(self, message: str) -> tuple[int, bool]:
        """The template id of `message`, and whether this line created the template.

        A line seen before, raw or once masked, keeps the template it got then: the Drain
        tree search is the cost of mining, and most lines repeat once their variables are
        masked.
        """
        lines = self._lines
        drain = self.miner.drain
        cached = lines.get(message)
        if cached is not None and cached in drain.id_to_cluster:
            lines.move_to_end(message)
            return cached, False
        masked = self.miner.masker.mask(message)
        cached = lines.get(masked)
        if cached is not None and cached in drain.id_to_cluster:
            lines.move_to_end(masked)
            self._remember(message, cached)
            return cached, False
        cluster, change = drain.add_log_message(masked)
        cluster_id = int(cluster.cluster_id)
        self._remember(masked, cluster_id)
        self._remember(message, cluster_id)
        return cluster_id, change == "cluster_created"

    def _remember(self, line: str, cluster_id: int) -> None:
        self._lines[line] = cluster_id
        if len(self._lines) > LINE_CACHE_SIZE:
            self._lines.popitem(last=False)

    def template(self, template_id: int) -> str:
        """The current text of a template ('' when it was evicted)."""
        cluster = self.miner.drain.id_to_cluster.get(template_id)
        return "" if cluster is None else str(cluster.get_template())

    def __len__(self) -> int:
        return len(self.miner.drain.id_to_cluster)

    def snapshot(self) -> dict[str, Any]:
        """The mined templates as plain fields: Drain's clusters (least recently used first)
        and its prefix tree, for a state record (`pipeline.codec`)."""
        drain = self.miner.drain
        clusters = drain.id_to_cluster
        # cachetools keeps the LRU order apart from the items; restoring in it keeps eviction.
        order = getattr(clusters, "_LRUCache__order", clusters)
        return {
            "counter": drain.clusters_counter,
            "clusters": [
                [c.cluster_id, list(c.log_template_tokens), c.size]
                for c in (clusters.get(cid) for cid in list(order))
                if c is not None
            ],
            "tree": _node_fields(drain.root_node),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the mined templates with a `snapshot()`; raises ValueError or TypeError on
        a bad one. Builds Drain's own classes from checked fields, never from names in data."""
        drain = self.miner.drain
        clusters = {} if drain.max_clusters is None else LogClusterCache(drain.max_clusters)
        for cluster_id, tokens, size in state["clusters"]:
            cluster = LogCluster([unpack_str(t) for t in tokens], unpack_int(cluster_id))
            cluster.size = unpack_int(size)
            clusters[cluster.cluster_id] = cluster
        root = _node_from(state["tree"], drain.log_cluster_depth + 1)
        drain.clusters_counter = unpack_int(state["counter"])
        drain.id_to_cluster = clusters
        drain.root_node = root
        self._lines.clear()


def _node_fields(node: Node) -> dict[str, Any]:
    return {
        "ids": list(node.cluster_ids),
        "children": [[key, _node_fields(child)] for key, child in node.key_to_child_node.items()],
    }


def _node_from(data: dict[str, Any], depth_left: int) -> Node:
    """A prefix-tree node; the tree is no deeper than Drain's depth, so nesting is bounded."""
    if depth_left < 0:
        raise ValueError("template tree deeper than the miner's depth")
    node = Node()
    node.cluster_ids = [unpack_int(i) for i in data["ids"]]
    for key, child in data["children"]:
        node.key_to_child_node[unpack_str(key)] = _node_from(child, depth_left - 1)
    return node


DetectorFactory = Callable[[Signal], GoldenSignalDetector]


@dataclass(slots=True)
class _Rate:
    """One counted series (a template, or a service's error lines): its model and open bucket."""

    detector: GoldenSignalDetector
    count: int = 0
    alarm_at: float | None = None
    last_report: float = -math.inf
    examples: deque[str] = field(default_factory=deque)


@dataclass(slots=True)
class _Template:
    """What a service keeps per template."""

    id: int
    rate: _Rate
    level_rank: int
    novel: bool
    buckets_seen: int = 0
    presence: int = 0  # bit i set: present in the i-th most recently closed bucket
    silent_since: float | None = None  # when its silence was first reported
    buckets_present: int = 0  # closed buckets it was present in, since first seen


@dataclass(slots=True)
class _Service:
    """What the stage keeps per service: its templates and its error-line rate."""

    name: str
    scope: str
    templates: TemplateSet
    errors: _Rate
    bucket: int
    by_id: OrderedDict[int, _Template] = field(default_factory=OrderedDict)
    silent: dict[int, None] = field(default_factory=dict)  # ids of templates reported silent
    buckets_closed: int = 0
    last_ts: float = -math.inf


@dataclass(slots=True)
class LogStats:
    """Counters the shell exports on /metrics."""

    records: int = 0
    anomalies: int = 0
    late: int = 0
    evicted: dict[str, int] = field(default_factory=lambda: {"ttl": 0, "lru": 0, "templates": 0})


class LogStage:
    """Mines templates from log records and scores their per-bucket counts into anomalies."""

    def __init__(
        self,
        config: LogsConfig,
        detect: DetectConfig,
        factory: DetectorFactory | None = None,
    ) -> None:
        self.config = config
        self.detect = detect
        self._factory = factory or self._default_factory
        self._miner_config = miner_config(
            config.similarity, config.depth, config.max_templates_per_service, config.masking
        )
        self._services: OrderedDict[str, _Service] = OrderedDict()
        self._min_rank = LEVEL_RANK[config.new_template_min_level]
        self._burst_rank = LEVEL_RANK[config.burst_min_level]
        self._history_mask = (1 << config.silence_window) - 1
        self.stats = LogStats()
        self.watermark = -math.inf
        self._next_ttl_sweep = -math.inf
        #: The template id of the last observed record (-1 before any), for benchmarks.
        self.last_template = -1
        #: Services the last `snapshot()` left out, their records being too large.
        self.rejected: list[RecordRejected] = []

    def _default_factory(self, signal: Signal) -> GoldenSignalDetector:
        return golden_for_signal(signal.value, warmup=self.config.warmup_buckets)

    @property
    def services_tracked(self) -> int:
        """How many services hold template state now."""
        return len(self._services)

    @property
    def templates_tracked(self) -> int:
        """How many templates are counted now, over all services."""
        return sum(len(s.by_id) for s in self._services.values())

    # ----------------------------------------------------------------- inputs

    def observe(self, record: LogRecord) -> list[Anomaly]:
        """Count one record; returns anomalies of buckets it closed, then any it raised itself."""
        # The hot path of the log stream: written for speed (no per-line allocations beyond
        # the miner's, no calls that are not needed).
        self.stats.records += 1
        ts = record.ts
        config = self.config
        out: list[Anomaly] = []
        if ts > self.watermark:
            self.watermark = ts
            if ts >= self._next_ttl_sweep:
                self._sweep_ttl(ts)
        index = math.floor(ts / config.bucket)
        service = self._service(record.labels, index)
        if index > service.bucket:
            out.extend(self._close_until(service, index))
        elif index < service.bucket:
            # A late line counts toward the open bucket: closed buckets are already learned.
            self.stats.late += 1
        if ts > service.last_ts:
            service.last_ts = ts
        template_id, created = service.templates.mine(record.message)
        self.last_template = template_id
        rank = LEVEL_RANK.get(record.level, 2)
        template = service.by_id.get(template_id)
        if template is None:
            novel = created and service.buckets_closed >= config.warmup_buckets
            template = self._admit_template(service, template_id, rank, novel)
        else:
            service.by_id.move_to_end(template_id)
            if rank > template.level_rank:
                template.level_rank = rank
            if template.silent_since is not None:
                template.silent_since = None
                service.silent.pop(template_id, None)
        rate = template.rate
        rate.count += 1
        keep = config.examples
        if rate.count <= keep:
            _example(rate, record.message)
        if template.novel and template.level_rank >= self._min_rank:
            if ts - rate.last_report >= config.repeat_every:
                rate.last_report = ts
                out.append(self._anomaly(service, template, "new_template", ts, Signal.ERRORS, 1.0))
        elif rate.count >= config.burst_min_count and template.level_rank >= self._burst_rank:
            signal = Signal.ERRORS if template.level_rank >= WARNING_RANK else Signal.TRAFFIC
            score = self._crossed(rate, signal, ts)
            if score is not None:
                out.append(self._anomaly(service, template, "template_burst", ts, signal, score))
        if rank >= ERROR_RANK:
            errors = service.errors
            errors.count += 1
            if errors.count <= keep:
                _example(errors, record.message)
            if errors.count >= config.burst_min_count:
                score = self._crossed(errors, Signal.ERRORS, ts)
                if score is not None:
                    out.append(self._error_anomaly(service, template, ts, score))
        if out:
            self.stats.anomalies += len(out)
        return out

    def advance(self, now: float) -> list[Anomaly]:
        """Move event time to `now`: close every service's buckets that ended by then."""
        if now > self.watermark:
            self.watermark = now
            self._sweep_ttl(now)
        index = math.floor(now / self.config.bucket)
        out: list[Anomaly] = []
        for service in list(self._services.values()):
            # A bucket closes once time has passed its end, so `now` itself opens bucket `index`.
            if index > service.bucket:
                out.extend(self._close_until(service, index))
            if service.silent:
                out.extend(self._still_silent(service, now))
        self.stats.anomalies += len(out)
        return out

    # ----------------------------------------------------------------- state per key

    def _service(self, labels: tuple[tuple[str, str], ...], index: int) -> _Service:
        service_label = self.detect.service_label
        name = next((v for k, v in labels if k == service_label), "") or "unknown"
        service = self._services.get(name)
        if service is not None:
            self._services.move_to_end(name)
            return service
        scope_label = self.detect.scope_label
        scope = (dict(labels).get(scope_label) if scope_label else None) or "default"
        service = _Service(
            name=name,
            scope=scope,
            templates=TemplateSet(self._miner_config),
            errors=_Rate(self._factory(Signal.ERRORS)),
            bucket=index,
        )
        self._services[name] = service
        while len(self._services) > self.config.max_services:
            self._services.popitem(last=False)
            self.stats.evicted["lru"] += 1
        return service

    def _admit_template(
        self, service: _Service, template_id: int, rank: int, novel: bool
    ) -> _Template:
        # Upward only whatever the level: an open bucket's partial count is no evidence of a drop.
        template = _Template(template_id, _Rate(self._factory(Signal.ERRORS)), rank, novel)
        service.by_id[template_id] = template
        while len(service.by_id) > self.config.max_templates_per_service:
            service.by_id.popitem(last=False)
            self.stats.evicted["templates"] += 1
        return template

    def _sweep_ttl(self, now: float) -> None:
        if now < self._next_ttl_sweep:
            return
        self._next_ttl_sweep = now + min(self.config.service_ttl, 60.0)
        horizon = now - self.config.service_ttl
        while self._services:
            name, service = next(iter(self._services.items()))
            if service.last_ts >= horizon:
                break
            del self._services[name]
            self.stats.evicted["ttl"] += 1

    # ----------------------------------------------------------------- scoring

    def _crossed(self, rate: _Rate, signal: Signal, ts: float) -> float | None:
        """The score when the open bucket's count just crossed its threshold and may report."""
        threshold = self.detect.thresholds[signal]
        if rate.alarm_at is None:
            rate.alarm_at = _alarm_count(rate.detector, threshold, self.config.burst_min_count)
        if rate.count < rate.alarm_at or ts - rate.last_report < self.config.repeat_every:
            return None
        rate.last_report = ts
        return rate.detector.score_one(float(rate.count))

    def _close_until(self, service: _Service, index: int) -> list[Anomaly]:
        """Close the service's buckets before `index`: learn their counts, look for silences."""
        out: list[Anomaly] = []
        gap = index - service.bucket
        # After a long gap, only the last buckets matter for silence and learning; the rest
        # are all zero and would cost time per template for nothing.
        steps = min(gap, self.config.silence_window + 1)
        skipped = gap - steps
        if skipped:
            for template in service.by_id.values():
                # Beyond the window the history is all zeros; never shift by a huge gap.
                shift = min(skipped, self.config.silence_window)
                template.presence = (template.presence << shift) & self._history_mask
        service.bucket = index - steps
        service.buckets_closed += skipped
        for _ in range(steps):
            end = (service.bucket + 1) * self.config.bucket
            for template in service.by_id.values():
                silent = self._close_template(service, template, end)
                if silent is not None:
                    out.append(silent)
            _learn(service.errors)
            service.bucket += 1
            service.buckets_closed += 1
        return out

    def _close_template(self, service: _Service, template: _Template, end: float) -> Anomaly | None:
        rate = template.rate
        present = rate.count > 0
        _learn(rate)
        template.presence = ((template.presence << 1) | present) & self._history_mask
        template.buckets_seen += 1
        template.buckets_present += present
        if template.novel and template.buckets_seen >= self.config.warmup_buckets:
            template.novel = False
        if present:
            if template.silent_since is not None:
                template.silent_since = None
                service.silent.pop(template.id, None)
            return None
        after = self.config.silence_after
        window = self.config.silence_window
        if template.silent_since is not None or template.buckets_seen < window:
            return None
        if template.presence & ((1 << after) - 1):
            return None
        history = (template.presence >> after).bit_count()
        if history < STEADY_SHARE * (window - after):
            return None
        if not _steady_since_seen(template, after):
            return None
        template.silent_since = end
        rate.last_report = end
        service.silent[template.id] = None
        anomaly = self._anomaly(service, template, "template_silent", end, Signal.TRAFFIC, 1.0)
        anomaly.detail["present_buckets_before"] = history
        return anomaly

    def _still_silent(self, service: _Service, now: float) -> list[Anomaly]:
        """Re-report silent templates every `repeat_every`, so a stopped heartbeat can page.

        After `silence_window` buckets of silence it is the new normal and is let go.
        """
        out: list[Anomaly] = []
        give_up = self.config.silence_window * self.config.bucket
        for template_id in list(service.silent):
            template = service.by_id.get(template_id)
            if template is None or template.silent_since is None:
                del service.silent[template_id]
                continue
            if now - template.silent_since > give_up:
                template.silent_since = None
                del service.silent[template_id]
                continue
            rate = template.rate
            if now - rate.last_report >= self.config.repeat_every:
                rate.last_report = now
                out.append(
                    self._anomaly(service, template, "template_silent", now, Signal.TRAFFIC, 1.0)
                )
        return out

    # ----------------------------------------------------------------- anomalies

    def _series(self, service: _Service, name: str, template: _Template | None) -> SeriesKey:
        labels = {self.detect.service_label: service.name}
        if template is not None:
            labels["template"] = str(template.id)
        if self.detect.scope_label and service.scope != "default":
            labels[self.detect.scope_label] = service.scope
        return SeriesKey.of(name, labels)

    def _anomaly(
        self,
        service: _Service,
        template: _Template,
        kind: str,
        ts: float,
        signal: Signal,
        score: float,
    ) -> Anomaly:
        rate = template.rate
        return Anomaly(
            ts=ts,
            series=self._series(service, TEMPLATE_SERIES, template),
            service=service.name,
            signal=signal,
            value=float(rate.count),
            expected=rate.detector.expected,
            score=score,
            threshold=self.detect.thresholds[signal],
            scope=service.scope,
            detail=self._detail(service, template, kind, rate),
        )

    def _error_anomaly(
        self, service: _Service, template: _Template, ts: float, score: float
    ) -> Anomaly:
        errors = service.errors
        detail = self._detail(service, template, "error_rate", errors)
        return Anomaly(
            ts=ts,
            series=self._series(service, ERROR_SERIES, None),
            service=service.name,
            signal=Signal.ERRORS,
            value=float(errors.count),
            expected=errors.detector.expected,
            score=score,
            threshold=self.detect.thresholds[Signal.ERRORS],
            scope=service.scope,
            detail=detail,
        )

    def _detail(
        self, service: _Service, template: _Template, kind: str, rate: _Rate
    ) -> dict[str, Any]:
        level = next(
            (name for name, rank in LEVEL_RANK.items() if rank == template.level_rank), "info"
        )
        return {
            "source": "logs",
            "kind": kind,
            "template_id": str(template.id),
            "template": redact_secrets(service.templates.template(template.id)),
            "level": level,
            "examples": [redact_secrets(line) for line in rate.examples],
            "count_during": rate.count,
            "baseline_per_bucket": round(rate.detector.expected, 3),
            "bucket_s": self.config.bucket,
        }

    # ----------------------------------------------------------------- checkpoints

    def snapshot(self) -> dict[str, bytes]:
        """The whole state as state records (`pipeline.codec`), by item name: the stage's own
        (`LOG_STAGE_RECORD`) and one per service (`LOG_SERVICE_PREFIX` + name), so no record
        holds more than one service. A service whose record would be too large is left out
        and raised about after the others are made (`RecordRejected`, via `rejected`)."""
        out = {
            LOG_STAGE_RECORD: encode(
                "log_stage", SNAPSHOT_VERSION, {"watermark": pack_float(self.watermark)}
            )
        }
        self.rejected = []
        for service in self._services.values():
            try:
                out[LOG_SERVICE_PREFIX + service.name] = encode(
                    "log_service", SNAPSHOT_VERSION, _service_fields(service)
                )
            except RecordRejected as exc:
                self.rejected.append(exc)
        return out

    def restore(
        self,
        records: Mapping[str, bytes],
        on_reject: Callable[[RecordRejected], None] | None = None,
    ) -> int:
        """Replace the whole state with `snapshot()` records; a record that does not decode is
        skipped and reported to `on_reject` (its service starts afresh). Returns the services
        restored."""
        self._services.clear()
        self.watermark = -math.inf
        restored = 0
        for item, blob in records.items():
            try:
                if item == LOG_STAGE_RECORD:
                    body = decode(blob, "log_stage", SNAPSHOT_VERSION)
                    with reading("log_stage"):
                        self.watermark = unpack_float(body["watermark"])
                    continue
                body = decode(blob, "log_service", SNAPSHOT_VERSION)
                with reading("log_service"):
                    service = self._service_from(body)
            except RecordRejected as exc:
                if on_reject is not None:
                    on_reject(exc)
                continue
            self._services[service.name] = service
            restored += 1
        return restored

    def _service_from(self, data: dict[str, Any]) -> _Service:
        template_set = TemplateSet(self._miner_config)
        template_set.restore(data["drain"])
        service = _Service(
            unpack_str(data["name"]),
            unpack_str(data["scope"]),
            template_set,
            _rate_from(data["errors"]),
            unpack_int(data["bucket"]),
        )
        for item in data["templates"]:
            template = _Template(
                id=unpack_int(item["id"]),
                rate=_rate_from(item["rate"]),
                level_rank=unpack_int(item["level_rank"]),
                novel=unpack_bool(item["novel"]),
                buckets_seen=unpack_int(item["buckets_seen"]),
                presence=int(unpack_str(item["presence"]), 16),
                silent_since=_optional_float(item["silent_since"]),
                buckets_present=unpack_int(item["buckets_present"]),
            )
            service.by_id[template.id] = template
        service.silent = dict.fromkeys(unpack_int(i) for i in data["silent"])
        service.buckets_closed = unpack_int(data["buckets_closed"])
        service.last_ts = unpack_float(data["last_ts"])
        return service


def _optional_float(value: Any) -> float | None:
    return None if value is None else unpack_float(value)


def _rate_fields(rate: _Rate) -> dict[str, Any]:
    settings, numbers, warm = rate.detector.export_state()
    return {
        "settings": settings,
        "numbers": [pack_float(x) for x in numbers],
        "warm": None if warm is None else [pack_float(x) for x in warm],
        "count": rate.count,
        "alarm_at": None if rate.alarm_at is None else pack_float(rate.alarm_at),
        "last_report": pack_float(rate.last_report),
        # Only this much of an example is ever read (`redact_secrets`): a long line is cut.
        "examples": [line[:_REDACT_SPAN] for line in rate.examples],
    }


def _rate_from(data: dict[str, Any]) -> _Rate:
    settings = data["settings"]
    if not isinstance(settings, dict) or not all(
        isinstance(v, (str, int, float, type(None))) for v in settings.values()
    ):
        raise ValueError("bad detector settings")
    warm = data["warm"]
    detector = GoldenSignalDetector.from_state(
        settings,
        [unpack_float(x) for x in data["numbers"]],
        None if warm is None else [unpack_float(x) for x in warm],
    )
    return _Rate(
        detector=detector,
        count=unpack_int(data["count"]),
        alarm_at=_optional_float(data["alarm_at"]),
        last_report=unpack_float(data["last_report"]),
        examples=deque(unpack_str(line) for line in data["examples"]),
    )


def _service_fields(service: _Service) -> dict[str, Any]:
    return {
        "name": service.name,
        "scope": service.scope,
        "drain": service.templates.snapshot(),
        "errors": _rate_fields(service.errors),
        "bucket": service.bucket,
        "templates": [
            {
                "id": t.id,
                "rate": _rate_fields(t.rate),
                "level_rank": t.level_rank,
                "novel": t.novel,
                "buckets_seen": t.buckets_seen,
                # A bit set as wide as `silence_window`: hex, as JSON integers stop at 64 bits.
                "presence": format(t.presence, "x"),
                "silent_since": _optional_float_packed(t.silent_since),
                "buckets_present": t.buckets_present,
            }
            for t in service.by_id.values()
        ],
        "silent": list(service.silent),
        "buckets_closed": service.buckets_closed,
        "last_ts": pack_float(service.last_ts),
    }


def _optional_float_packed(value: float | None) -> float | str | None:
    return None if value is None else pack_float(value)


def _steady_since_seen(template: _Template, after: int) -> bool:
    """Whether the template's last `after` empty buckets are unlikely to be chance.

    With share `q` of the buckets before them present, a gap that long comes by chance about
    `(1 - q) ** after` of the time; a heartbeat has `q` near 1, a line that comes now and then
    a lot less.

    >>> t = _Template(1, _Rate(None), 2, False, buckets_seen=12, buckets_present=10)
    >>> _steady_since_seen(t, 2)
    True
    >>> t.buckets_present = 8
    >>> _steady_since_seen(t, 2)
    False
    """
    before = template.buckets_seen - after
    if before <= 0:
        return False
    absent = 1.0 - min(before, template.buckets_present) / before
    return bool(absent**after <= SILENCE_CHANCE)


def _example(rate: _Rate, line: str) -> None:
    """Keep the first lines of the open bucket (raw; redacted when shown): a bucket's first
    line replaces the previous bucket's, so a silence still shows the last lines seen."""
    if rate.count == 1:
        rate.examples.clear()
    rate.examples.append(line)


def _learn(rate: _Rate) -> None:
    rate.detector.learn_one(float(rate.count))
    rate.count = 0
    rate.alarm_at = None


def _alarm_count(detector: GoldenSignalDetector, threshold: float, floor: int) -> float:
    """The smallest count of at least `floor` that scores at or over `threshold` (inf: none).

    Scores only grow with the count above the baseline, so a doubling then a bisection finds it
    in a few dozen scorings, once per bucket, instead of one scoring per line.
    """
    if detector.n_seen < detector.warmup:
        return math.inf
    low = floor
    if detector.score_one(float(low)) >= threshold:
        return float(low)
    high = low * 2
    while detector.score_one(float(high)) < threshold:
        low = high
        high *= 2
        if high > 1 << 40:
            return math.inf
    while high - low > 1:
        middle = (low + high) // 2
        if detector.score_one(float(middle)) >= threshold:
            high = middle
        else:
            low = middle
    return float(high)
