"""The correlator's decisions: each (kind, reason) it emits, in one table, and the `Decision` type.

Decisions (kind, reason), counted and logged by the caller; the slugs are stable:

=========  ===================  ==========================================================
kind       reason               when
=========  ===================  ==========================================================
fold       new_incident_held    the anomaly opened a new incident, held for `hold_for`
fold       joined_incident      a new series joined an open incident
fold       dedup_same_series    a series already in the incident fired again
fold       symptom_of_root      a new series of a caller of the incident's suspected root
fold       root_changed         a new series that changed the incident's suspected root
fold       flapping             its series is flapping: folded, never held to a page
suppress   silenced             the anomaly matched an active silence
suppress   stale                the anomaly is older than now - resolve_after (a redelivery),
                                or than the close of its series' incident that paged
suppress   blip_recovered       the incident went quiet before it ever paged
suppress   evicted              an incident that never paged was dropped for max_incidents
suppress   storm_capped         a due trigger was held back by the storm cap
page       first_notification   trigger: the incident outlived its hold
page       low_urgency          trigger of a low-urgency incident, to `route.low_urgency`
page       escalated            trigger to `route.receivers` of a low-urgency incident that
                                a latency, errors or traffic series has joined for `hold_for`
page       resolved             resolve: the incident went quiet after paging
page       evicted              resolve: a paged incident was dropped for max_incidents
=========  ===================  ==========================================================

Every anomaly yields exactly one fold or suppress decision ("silenced" or a fold reason);
pages and incident closings are decisions of their own. Within one call the order is:
closings that fell due (oldest first), evictions, the anomaly's decision, then its trigger.
Decision times never decrease from one decision to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pipeline.model import Page

DecisionKind = Literal["page", "fold", "suppress"]

NEW_INCIDENT_HELD: Final = "new_incident_held"
JOINED_INCIDENT: Final = "joined_incident"
DEDUP_SAME_SERIES: Final = "dedup_same_series"
SYMPTOM_OF_ROOT: Final = "symptom_of_root"
ROOT_CHANGED: Final = "root_changed"
SILENCED: Final = "silenced"
FLAPPING: Final = "flapping"
STORM_CAPPED: Final = "storm_capped"
LOW_URGENCY: Final = "low_urgency"
ESCALATED: Final = "escalated"
STALE: Final = "stale"
BLIP_RECOVERED: Final = "blip_recovered"
EVICTED: Final = "evicted"
FIRST_NOTIFICATION: Final = "first_notification"
RESOLVED: Final = "resolved"

DECISION_REASONS: Final[tuple[tuple[DecisionKind, str], ...]] = (
    ("fold", NEW_INCIDENT_HELD),
    ("fold", JOINED_INCIDENT),
    ("fold", DEDUP_SAME_SERIES),
    ("fold", SYMPTOM_OF_ROOT),
    ("fold", ROOT_CHANGED),
    ("fold", FLAPPING),
    ("suppress", SILENCED),
    ("suppress", STALE),
    ("suppress", BLIP_RECOVERED),
    ("suppress", EVICTED),
    ("suppress", STORM_CAPPED),
    ("page", FIRST_NOTIFICATION),
    ("page", LOW_URGENCY),
    ("page", ESCALATED),
    ("page", RESOLVED),
    ("page", EVICTED),
)
"""Every (kind, reason) the correlator emits, so metrics can start each label set at zero."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One correlation decision and why: what happened to an anomaly, or a page to send."""

    kind: DecisionKind
    reason: str
    incident_id: str
    page: Page | None
    at: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able shape for a log line (the page itself travels separately)."""
        return {
            "kind": self.kind,
            "reason": self.reason,
            "incident_id": self.incident_id,
            "at": self.at,
            "page_action": self.page.action if self.page is not None else None,
            "detail": self.detail,
        }
