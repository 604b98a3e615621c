"""The live worker's names where they have always been imported from.

The shell lives in `pipeline.shell` (one module per stage's runner, `pipeline.shell.worker`
for the supervisor); this module re-exports it so that `from pipeline.worker import Worker`
and the like keep working.
"""

from __future__ import annotations

from pipeline.shell.correlate import (
    CORRELATE_SCHEMA,
    CORRELATOR_ITEM,
    INCIDENT_PREFIX,
    CorrelateRunner,
)
from pipeline.shell.detect import (
    DLQ_RECORDS_PER_MESSAGE,
    LOG_STAGE_ITEM,
    PRODUCED_HEADER,
    DetectRunner,
)
from pipeline.shell.notify import NotifyRunner
from pipeline.shell.runner import Batch, StageRunner, StageStatus, stage_consumer_settings
from pipeline.shell.worker import Worker

__all__ = [
    "CORRELATE_SCHEMA",
    "CORRELATOR_ITEM",
    "DLQ_RECORDS_PER_MESSAGE",
    "INCIDENT_PREFIX",
    "LOG_STAGE_ITEM",
    "PRODUCED_HEADER",
    "Batch",
    "CorrelateRunner",
    "DetectRunner",
    "NotifyRunner",
    "StageRunner",
    "StageStatus",
    "Worker",
    "stage_consumer_settings",
]
