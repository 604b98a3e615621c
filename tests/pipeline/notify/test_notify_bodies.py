"""Receiver bodies: PagerDuty Events API v2 and Alertmanager webhook v4 field rules."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pipeline.errors import ConfigError
from pipeline.model import Page
from pipeline.notify.bodies import (
    ALERTMANAGER_ZERO_TIME,
    PAGERDUTY_DEDUP_KEY_MAX,
    PAGERDUTY_SUMMARY_MAX,
    alertmanager_body,
    fingerprint,
    pagerduty_body,
    pagerduty_severity,
    render_body,
)

AT = 1795683600.25  # 2026-11-26T09:00:00.250Z
AT_TEXT = "2026-11-26T09:00:00.250Z"


def make_page(**changes: Any) -> Page:
    page = Page(
        action="trigger",
        dedup_key="qp-default-checkout-1795683600",
        at=AT,
        summary="checkout: latency and errors up (3 alerts folded)",
        severity="critical",
        source="quietpager/eu-west-1",
        root_service="checkout",
        scope="eu-west-1",
        signals=("latency", "errors"),
        receivers=("oncall",),
        custom_details={"root_cause": "checkout", "folded": 3},
    )
    return dataclasses.replace(page, **changes)


def test_pagerduty_trigger_has_the_documented_fields() -> None:
    body = pagerduty_body(make_page(), "R0UTINGKEY")
    assert body == {
        "routing_key": "R0UTINGKEY",
        "event_action": "trigger",
        "dedup_key": "qp-default-checkout-1795683600",
        "payload": {
            "summary": "checkout: latency and errors up (3 alerts folded)",
            "source": "quietpager/eu-west-1",
            "severity": "critical",
            "timestamp": AT_TEXT,
            "component": "checkout",
            "group": "eu-west-1",
            "class": "latency,errors",
            "custom_details": {"root_cause": "checkout", "folded": 3},
        },
    }


def test_pagerduty_resolve_is_bare_and_shares_the_trigger_dedup_key() -> None:
    trigger = pagerduty_body(make_page(), "K")
    resolve = pagerduty_body(make_page(action="resolve", at=AT + 600), "K")
    assert resolve == {
        "routing_key": "K",
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }


def test_pagerduty_summary_is_truncated_to_1024() -> None:
    body = pagerduty_body(make_page(summary="x" * 5000), "K")
    summary = body["payload"]["summary"]
    assert len(summary) == PAGERDUTY_SUMMARY_MAX
    assert summary.startswith("x" * 1000)
    assert summary.endswith("…")


def test_pagerduty_summary_at_the_limit_is_kept_whole() -> None:
    body = pagerduty_body(make_page(summary="y" * PAGERDUTY_SUMMARY_MAX), "K")
    assert body["payload"]["summary"] == "y" * PAGERDUTY_SUMMARY_MAX


def test_pagerduty_empty_summary_gets_a_fallback() -> None:
    body = pagerduty_body(make_page(summary="  "), "K")
    assert body["payload"]["summary"] == "checkout: incident"


def test_pagerduty_long_dedup_key_is_shortened_the_same_way_for_trigger_and_resolve() -> None:
    key = "k" * 400
    trigger = pagerduty_body(make_page(dedup_key=key), "K")
    resolve = pagerduty_body(make_page(dedup_key=key, action="resolve"), "K")
    assert len(trigger["dedup_key"]) == PAGERDUTY_DEDUP_KEY_MAX
    assert trigger["dedup_key"] == resolve["dedup_key"]
    other = pagerduty_body(make_page(dedup_key="k" * 399 + "j"), "K")
    assert other["dedup_key"] != trigger["dedup_key"]


def test_pagerduty_empty_optional_fields_are_left_out() -> None:
    body = pagerduty_body(make_page(root_service="", scope="", signals=()), "K")
    assert set(body["payload"]) == {"summary", "source", "severity", "timestamp", "custom_details"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("critical", "critical"),  # already a PagerDuty value
        ("error", "error"),  # already a PagerDuty value
        ("warning", "warning"),  # already a PagerDuty value
        ("info", "info"),  # already a PagerDuty value
        ("CRITICAL", "critical"),  # case does not matter
        ("warn", "warning"),  # common abbreviation
        ("crit", "critical"),  # common abbreviation
        ("bogus", "error"),  # unknown still pages, at high urgency
    ],
)
def test_pagerduty_severity_values(given: str, expected: str) -> None:
    assert pagerduty_severity(given) == expected
    assert pagerduty_body(make_page(severity=given), "K")["payload"]["severity"] == expected


def test_alertmanager_firing_body() -> None:
    body = alertmanager_body(make_page(), "oncall", external_url="http://qp.example:9108")
    labels = {
        "alertname": "QuietpagerIncident",
        "service": "checkout",
        "scope": "eu-west-1",
        "severity": "critical",
        "dedup_key": "qp-default-checkout-1795683600",
    }
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "oncall"
    assert body["truncatedAlerts"] == 0
    assert body["externalURL"] == "http://qp.example:9108"
    assert body["groupLabels"] == {
        "alertname": "QuietpagerIncident",
        "dedup_key": "qp-default-checkout-1795683600",
    }
    assert body["groupKey"] == (
        '{}:{alertname="QuietpagerIncident", dedup_key="qp-default-checkout-1795683600"}'
    )
    assert body["commonLabels"] == labels
    assert body["commonAnnotations"]["summary"] == make_page().summary
    [alert] = body["alerts"]
    assert set(alert) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert alert["status"] == "firing"
    assert alert["labels"] == labels
    assert alert["annotations"]["description"] == (
        "Suspected root cause: checkout. Signals: latency, errors. "
        "Scope: eu-west-1. Source: quietpager/eu-west-1."
    )
    assert alert["startsAt"] == AT_TEXT
    assert alert["endsAt"] == ALERTMANAGER_ZERO_TIME
    assert alert["generatorURL"] == "http://qp.example:9108"


def test_alertmanager_resolved_body_ends_at_page_time_and_keeps_fingerprint() -> None:
    firing = alertmanager_body(make_page(), "oncall")
    resolved = alertmanager_body(
        make_page(action="resolve", at=AT + 600, custom_details={"started_at": AT}), "oncall"
    )
    assert resolved["status"] == "resolved"
    [alert] = resolved["alerts"]
    assert alert["status"] == "resolved"
    assert alert["endsAt"] == "2026-11-26T09:10:00.250Z"
    assert alert["startsAt"] == AT_TEXT
    assert alert["fingerprint"] == firing["alerts"][0]["fingerprint"]
    assert resolved["groupKey"] == firing["groupKey"]


def test_alertmanager_resolved_without_start_uses_page_time() -> None:
    body = alertmanager_body(make_page(action="resolve", custom_details={}), "oncall")
    assert body["alerts"][0]["startsAt"] == AT_TEXT


def test_fingerprint_is_stable_hex() -> None:
    assert fingerprint("a") == fingerprint("a")
    assert fingerprint("a") != fingerprint("b")
    assert len(fingerprint("a")) == 16
    int(fingerprint("a"), 16)


def test_render_body_dispatches_on_kind() -> None:
    page = make_page()
    assert render_body("pagerduty", page, "pd", "K") == pagerduty_body(page, "K")
    assert render_body("alertmanager", page, "am", None) == alertmanager_body(page, "am")


def test_render_body_pagerduty_without_routing_key_names_the_receiver() -> None:
    with pytest.raises(ConfigError, match="receiver 'pd': type pagerduty needs a routing_key"):
        render_body("pagerduty", make_page(), "pd", None)
