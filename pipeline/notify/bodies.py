"""Receiver bodies built from a `Page`: PagerDuty Events API v2 and Alertmanager webhook v4.

Pure functions: no I/O and no clock; every time in a body comes from `page.at`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pipeline.errors import ConfigError
from pipeline.model import Page
from pipeline.timeutil import format_timestamp, parse_timestamp

PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
PAGERDUTY_SUMMARY_MAX = 1024
PAGERDUTY_DEDUP_KEY_MAX = 255
ALERTNAME = "QuietpagerIncident"
ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"

# Common spellings from other tools, so a page is not downgraded over a synonym.
_SEVERITY_ALIASES = {
    "crit": "critical",
    "fatal": "critical",
    "page": "critical",
    "err": "error",
    "high": "error",
    "warn": "warning",
    "medium": "warning",
    "low": "info",
    "informational": "info",
}
# An unknown severity still has to page: `error` keeps PagerDuty's high urgency
# without claiming an outage the detector did not see.
_FALLBACK_SEVERITY = "error"
_ELLIPSIS = "…"


def pagerduty_severity(severity: str) -> str:
    """One of PagerDuty's four severities for any page severity.

    >>> pagerduty_severity("WARN"), pagerduty_severity("critical"), pagerduty_severity("???")
    ('warning', 'critical', 'error')
    """
    text = severity.strip().lower()
    if text in PAGERDUTY_SEVERITIES:
        return text
    return _SEVERITY_ALIASES.get(text, _FALLBACK_SEVERITY)


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut.

    >>> truncate("abcdef", 4), truncate("abc", 4)
    ('abc…', 'abc')
    """
    if len(text) <= limit:
        return text
    return text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def pagerduty_dedup_key(dedup_key: str) -> str:
    """The page's dedup key, shortened deterministically when PagerDuty's 255 limit would reject it.

    Trigger and resolve go through the same function, so they still share a key.
    """
    if len(dedup_key) <= PAGERDUTY_DEDUP_KEY_MAX:
        return dedup_key
    digest = hashlib.sha256(dedup_key.encode("utf-8")).hexdigest()
    return dedup_key[: PAGERDUTY_DEDUP_KEY_MAX - len(digest) - 1] + "~" + digest


def _summary(page: Page) -> str:
    # PagerDuty rejects an empty summary; a page must never be lost over its wording.
    text = page.summary.strip() or f"{page.root_service or 'unknown service'}: incident"
    return truncate(text, PAGERDUTY_SUMMARY_MAX)


def pagerduty_body(page: Page, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body for one page: a trigger with its payload, or a bare resolve.

    Optional payload fields (`component`, `group`, `class`) are left out when empty.
    """
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": page.action,
        "dedup_key": pagerduty_dedup_key(page.dedup_key),
    }
    if page.action == "resolve":
        # The API documents a resolve as these three fields; a payload would be ignored.
        return body
    payload: dict[str, Any] = {
        "summary": _summary(page),
        "source": page.source or "quietpager",
        "severity": pagerduty_severity(page.severity),
        "timestamp": format_timestamp(page.at),
    }
    if page.root_service:
        payload["component"] = page.root_service
    if page.scope:
        payload["group"] = page.scope
    if page.signals:
        payload["class"] = ",".join(page.signals)
    payload["custom_details"] = dict(page.custom_details)
    body["payload"] = payload
    return body


def fingerprint(dedup_key: str) -> str:
    """A stable 16-hex-digit alert fingerprint, the width Alertmanager uses.

    >>> fingerprint("checkout:1") == fingerprint("checkout:1"), len(fingerprint("x"))
    (True, 16)
    """
    return hashlib.sha256(dedup_key.encode("utf-8")).hexdigest()[:16]


def _started_at(page: Page) -> float:
    # A resolve page is sent at resolve time; when correlate records the incident's
    # start in custom_details["started_at"], the alert keeps its true start.
    raw = page.custom_details.get("started_at")
    if raw is None:
        return page.at
    try:
        return parse_timestamp(raw)
    except ValueError:
        return page.at


def _description(page: Page) -> str:
    signals = ", ".join(page.signals) or "none"
    return (
        f"Suspected root cause: {page.root_service or 'unknown'}. "
        f"Signals: {signals}. Scope: {page.scope}. Source: {page.source}."
    )


def _group_key(labels: dict[str, str]) -> str:
    # Alertmanager's shape: `<route matchers>:<group labels>` with Go-quoted values.
    inner = ", ".join(
        f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in labels.items()
    )
    return f"{{}}:{{{inner}}}"


def alertmanager_body(page: Page, receiver: str, external_url: str = "") -> dict[str, Any]:
    """The Alertmanager webhook (version 4) body for one page: one group holding one alert."""
    status = "firing" if page.action == "trigger" else "resolved"
    labels = {
        "alertname": ALERTNAME,
        "service": page.root_service,
        "scope": page.scope,
        "severity": page.severity,
        "dedup_key": page.dedup_key,
    }
    annotations = {"summary": page.summary, "description": _description(page)}
    # One incident is one group, so the group is keyed by the incident's dedup key.
    group_labels = {"alertname": ALERTNAME, "dedup_key": page.dedup_key}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": format_timestamp(_started_at(page)),
        "endsAt": format_timestamp(page.at) if status == "resolved" else ALERTMANAGER_ZERO_TIME,
        "generatorURL": external_url,
        "fingerprint": fingerprint(page.dedup_key),
    }
    return {
        "version": "4",
        "groupKey": _group_key(group_labels),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": dict(labels),
        "commonAnnotations": dict(annotations),
        "externalURL": external_url,
        "alerts": [alert],
    }


def render_body(
    kind: Literal["pagerduty", "alertmanager"],
    page: Page,
    receiver_name: str,
    routing_key: str | None,
) -> dict[str, Any]:
    """The body for a receiver of type `kind`; a PagerDuty receiver needs its routing key."""
    if kind == "pagerduty":
        if not routing_key:
            raise ConfigError(f"receiver {receiver_name!r}: type pagerduty needs a routing_key")
        return pagerduty_body(page, routing_key)
    if kind == "alertmanager":
        return alertmanager_body(page, receiver_name)
    raise ValueError(f"unknown receiver type {kind!r}")
