"""The stage cores a config describes, built in one place for every driver.

The live worker, `replay` and the benchmarks all build their detect, log and correlate
cores here (the counterpart of Alertmanager's `PipelineBuilder.New`), so a core's wiring
changes once and every driver runs the same stages.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import Config
from pipeline.correlate.incidents import Correlator
from pipeline.correlate.silence import Silencer
from pipeline.correlate.topology import Topology
from pipeline.detect import DetectStage
from pipeline.logsignals import LogStage

__all__ = ["StageCores", "build_correlator", "build_detect", "build_log_stage"]


def build_detect(config: Config) -> DetectStage:
    """The detect core: one model per series, event time bounded by `detect.max_lead`."""
    return DetectStage(config.detect, max_lead=config.max_lead)


def build_log_stage(config: Config) -> LogStage:
    """A log core (one per logs partition live, one in all offline)."""
    return LogStage(config.logs, config.detect)


def build_correlator(config: Config, silencer: Silencer | None = None) -> Correlator:
    """The correlator a config describes.

    The live worker passes one `silencer` shared by all its correlators, so silences
    created or expired through the API apply everywhere at once.
    """
    return Correlator(
        config.correlate,
        Topology(config.topology),
        silencer if silencer is not None else Silencer.from_config(config.silences),
        receivers=tuple(config.route.receivers),
        low_urgency_receivers=tuple(config.route.low_urgency),
    )


@dataclass(slots=True)
class StageCores:
    """The cores of one in-process chain: detect, logs (None when `logs.enabled` is off)
    and correlate."""

    detect: DetectStage
    logs: LogStage | None
    correlator: Correlator

    @classmethod
    def assemble(cls, config: Config, silencer: Silencer | None = None) -> StageCores:
        """Every core a config asks for, wired as `replay` and the benchmarks run them."""
        return cls(
            detect=build_detect(config),
            logs=build_log_stage(config) if config.logs.enabled else None,
            correlator=build_correlator(config, silencer),
        )
