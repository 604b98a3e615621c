"""Notify stage: turn pages into receiver bodies and deliver them with retries."""

from __future__ import annotations

from pipeline.notify.bodies import alertmanager_body, pagerduty_body, render_body
from pipeline.notify.sender import (
    DeliveryResult,
    WebhookSender,
    backoff_delay,
    classify,
    parse_retry_after,
    retry_delay,
)
from pipeline.notify.sink import WebhookSink

__all__ = [
    "DeliveryResult",
    "WebhookSender",
    "WebhookSink",
    "alertmanager_body",
    "backoff_delay",
    "classify",
    "pagerduty_body",
    "parse_retry_after",
    "render_body",
    "retry_delay",
]
