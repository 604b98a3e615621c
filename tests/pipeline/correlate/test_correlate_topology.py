"""Topology: dependencies, relatedness and root causes on chains, diamonds and cycles."""

from __future__ import annotations

import pytest

from pipeline.correlate.topology import Topology

# frontend -> checkout -> payments -> payments-db
CHAIN = {"frontend": ["checkout"], "checkout": ["payments"], "payments": ["payments-db"]}
# gateway calls two services that share one database
DIAMOND = {"gateway": ["orders", "search"], "orders": ["db"], "search": ["db"]}
# a <-> b, and b also calls c
CYCLE = {"a": ["b"], "b": ["a", "c"]}


def test_dependencies_and_dependents() -> None:
    topology = Topology(DIAMOND)
    assert topology.dependencies("gateway") == frozenset({"orders", "search"})
    assert topology.dependencies("db") == frozenset()
    assert topology.dependents("db") == frozenset({"orders", "search"})
    assert topology.transitive_dependencies("gateway") == frozenset({"orders", "search", "db"})
    assert topology.transitive_dependents("db") == frozenset({"gateway", "orders", "search"})
    # callees that never appear as keys are still services
    assert topology.services == frozenset({"gateway", "orders", "search", "db"})


def test_cycle_closure_terminates_and_excludes_self() -> None:
    topology = Topology(CYCLE)
    assert topology.transitive_dependencies("a") == frozenset({"b", "c"})
    assert topology.transitive_dependencies("b") == frozenset({"a", "c"})
    assert topology.transitive_dependents("c") == frozenset({"a", "b"})


def test_self_call_is_ignored() -> None:
    topology = Topology({"a": ["a", "b"]})
    assert topology.dependencies("a") == frozenset({"b"})
    assert topology.transitive_dependencies("a") == frozenset({"b"})


@pytest.mark.parametrize(
    ("graph", "a", "b", "expected"),
    [
        # direct call
        (CHAIN, "frontend", "checkout", True),
        # direct call, asked the other way round
        (CHAIN, "checkout", "frontend", True),
        # transitive call across the whole chain
        (CHAIN, "frontend", "payments-db", True),
        # a service is related to itself
        (CHAIN, "payments", "payments", True),
        # diamond siblings share a dependency but neither calls the other
        (DIAMOND, "orders", "search", False),
        # both siblings are related to the shared database
        (DIAMOND, "search", "db", True),
        # members of a cycle are related
        (CYCLE, "a", "b", True),
        # a cycle member reaches past the cycle
        (CYCLE, "a", "c", True),
        # an unknown service is isolated
        (CHAIN, "frontend", "billing", False),
        # two unknown services are unrelated
        (CHAIN, "billing", "mailer", False),
        # an unknown service is related to itself
        (CHAIN, "billing", "billing", True),
    ],
)
def test_related(graph: dict[str, list[str]], a: str, b: str, expected: bool) -> None:
    assert Topology(graph).related(a, b) is expected


@pytest.mark.parametrize(
    ("graph", "anomalous", "expected"),
    [
        # the whole chain is anomalous: the bottom is the root
        (CHAIN, ["frontend", "checkout", "payments", "payments-db"], ["payments-db"]),
        # the order of the input does not matter
        (CHAIN, ["payments-db", "frontend", "payments", "checkout"], ["payments-db"]),
        # a gap in the chain: still the most downstream anomalous one
        (CHAIN, ["frontend", "payments"], ["payments"]),
        # a single service is its own root
        (CHAIN, ["checkout"], ["checkout"]),
        # diamond with everything anomalous: the shared database
        (DIAMOND, ["gateway", "orders", "search", "db"], ["db"]),
        # diamond without the database: both siblings are roots
        (DIAMOND, ["gateway", "orders", "search"], ["orders", "search"]),
        # a cycle with both members anomalous: both, neither hides the other
        (CYCLE, ["a", "b"], ["a", "b"]),
        # a cycle plus the service past it: the one past the cycle
        (CYCLE, ["a", "b", "c"], ["c"]),
        # unknown services are isolated, so each is a root
        (CHAIN, ["billing", "checkout", "payments"], ["billing", "payments"]),
        # duplicates collapse
        (CHAIN, ["checkout", "checkout"], ["checkout"]),
        # nothing anomalous, nothing to blame
        (CHAIN, [], []),
    ],
)
def test_root_causes(
    graph: dict[str, list[str]], anomalous: list[str], expected: list[str]
) -> None:
    assert Topology(graph).root_causes(anomalous) == expected


@pytest.mark.parametrize(
    ("graph", "anomalous", "expected"),
    [
        # the top of the chain is where users feel it
        (CHAIN, ["checkout", "payments", "payments-db"], ["checkout"]),
        # diamond without the gateway: both siblings are entry points
        (DIAMOND, ["orders", "search", "db"], ["orders", "search"]),
        # a cycle on top of its dependency
        (CYCLE, ["a", "b", "c"], ["a", "b"]),
    ],
)
def test_entry_points(
    graph: dict[str, list[str]], anomalous: list[str], expected: list[str]
) -> None:
    assert Topology(graph).entry_points(anomalous) == expected


def test_related_services_is_the_neighbourhood() -> None:
    topology = Topology(DIAMOND)
    assert topology.related_services("orders") == frozenset({"orders", "gateway", "db"})
    assert topology.related_services("unknown") == frozenset({"unknown"})
    assert Topology().related_services("x") == frozenset({"x"})
