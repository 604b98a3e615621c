"""The one root exception of quietpager and its families."""

from __future__ import annotations


class QuietpagerError(Exception):
    """Root of every error quietpager raises on purpose."""


class ConfigError(QuietpagerError):
    """A configuration file is missing, unreadable or invalid."""


class DecodeError(QuietpagerError):
    """A telemetry message cannot be turned into points or records.

    `reason` is a short, stable slug used as a metric label and in the DLQ.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BrokerError(QuietpagerError):
    """The embedded broker cannot be found or started."""
