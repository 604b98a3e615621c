"""Correlate stage: fold anomalies into incidents, tell root cause from symptoms, decide pages."""

from __future__ import annotations

from pipeline.correlate.incidents import (
    DECISION_REASONS,
    Correlator,
    Decision,
    DecisionKind,
    IncidentView,
    feed,
    incident_id,
)
from pipeline.correlate.silence import (
    Matcher,
    Silencer,
    SilenceRule,
    anomaly_labels,
    parse_matcher,
)
from pipeline.correlate.topology import Topology

__all__ = [
    "DECISION_REASONS",
    "Correlator",
    "Decision",
    "DecisionKind",
    "IncidentView",
    "Matcher",
    "SilenceRule",
    "Silencer",
    "Topology",
    "anomaly_labels",
    "feed",
    "incident_id",
    "parse_matcher",
]
