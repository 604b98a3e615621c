"""The shop's old import path (`pipeline.simulate` now), kept for bench modules that use it."""

from pipeline.simulate import (
    ERRORS,
    LATENCY,
    SATURATION,
    SHOP_TOPOLOGY,
    TRAFFIC,
    Blip,
    Fault,
    Scenario,
    affected_services,
    agent_messages,
    generate,
    hops_from,
)

__all__ = [
    "ERRORS",
    "LATENCY",
    "SATURATION",
    "SHOP_TOPOLOGY",
    "TRAFFIC",
    "Blip",
    "Fault",
    "Scenario",
    "affected_services",
    "agent_messages",
    "generate",
    "hops_from",
]
