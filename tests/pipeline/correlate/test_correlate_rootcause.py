"""Root-cause ranking as pure functions: which service is an incident's suspected root."""

from __future__ import annotations

import pytest

from pipeline.correlate.rootcause import (
    ROOT_FILTER_LIMIT,
    suspected_root,
    symptoms,
    with_service,
)
from pipeline.correlate.topology import Topology

CHAIN = Topology({"frontend": ["checkout"], "checkout": ["payments"], "payments": ["payments-db"]})
#: Two independent databases: `b-db` serves two callers, `a-db` one.
TWO_DBS = Topology({"x": ["b-db"], "y": ["b-db"], "z": ["a-db"]})
HOLD = 60.0

Evidence = dict[str, tuple[float, float, float]]  # service -> (first seen, last seen, streak)


@pytest.mark.parametrize(
    ("topology", "evidence", "candidates", "at", "expected"),
    [
        # one candidate: it is the root
        (CHAIN, {"checkout": (0, 50, 50), "payments": (10, 50, 40)}, ["payments"], 50, "payments"),
        # the longer streak wins over the earlier first anomaly
        (TWO_DBS, {"a-db": (0, 50, 10), "b-db": (20, 50, 30)}, ["a-db", "b-db"], 50, "b-db"),
        # streaks count up to hold_for only: both held, so the earlier one wins
        (TWO_DBS, {"a-db": (0, 200, 200), "b-db": (20, 200, 90)}, ["a-db", "b-db"], 200, "a-db"),
        # equal streaks: the earlier first anomaly wins
        (TWO_DBS, {"a-db": (5, 50, 30), "b-db": (0, 50, 30)}, ["a-db", "b-db"], 50, "b-db"),
        # equal streaks and times: the one more of the incident's services depend on
        (
            TWO_DBS,
            {s: (0, 50, 30) for s in ("a-db", "b-db", "x", "y", "z")},
            ["a-db", "b-db"],
            50,
            "b-db",
        ),
        # ... which counts only services in the incident: then the name decides
        (TWO_DBS, {s: (0, 50, 30) for s in ("a-db", "b-db")}, ["a-db", "b-db"], 50, "a-db"),
        # a one-off long gone on the dependency does not explain a caller still failing
        (CHAIN, {"payments": (0, 0, 0), "checkout": (10, 500, 90)}, ["payments"], 500, "checkout"),
        # a dependency with a held streak keeps its evidence however long ago
        (
            CHAIN,
            {"payments": (0, 90, 90), "checkout": (10, 500, 90)},
            ["payments"],
            500,
            "payments",
        ),
        # nobody has recent evidence: the candidates stand as they are
        (CHAIN, {"payments": (0, 0, 0), "checkout": (10, 10, 0)}, ["payments"], 500, "payments"),
    ],
)
def test_suspected_root(
    topology: Topology, evidence: Evidence, candidates: list[str], at: float, expected: str
) -> None:
    root = suspected_root(
        services={s: first for s, (first, _, _) in evidence.items()},
        candidates=candidates,
        streaks={s: streak for s, (_, _, streak) in evidence.items()},
        last_seen={s: last for s, (_, last, _) in evidence.items()},
        at=at,
        hold_for=HOLD,
        topology=topology,
    )
    assert root == expected


def test_a_big_incident_ranks_its_candidates_without_the_evidence_filter() -> None:
    # over the limit a stale one-off stays a candidate (filtering would walk every service)
    services = {f"web-{i}": 10.0 for i in range(ROOT_FILTER_LIMIT)} | {"payments": 0.0}
    root = suspected_root(
        services=services,
        candidates=["payments"],
        streaks={},
        last_seen={},
        at=500.0,
        hold_for=HOLD,
        topology=Topology({f"web-{i}": ["payments"] for i in range(ROOT_FILTER_LIMIT)}),
    )
    assert root == "payments"


@pytest.mark.parametrize(
    ("services", "joining"),
    [
        # the first service is its own candidate
        ((), "checkout"),
        # a dependency replaces its caller
        (("checkout",), "payments"),
        # a caller of the candidate changes nothing
        (("payments",), "frontend"),
        # an unrelated service is a candidate of its own
        (("payments",), "search"),
        # a service between two listed ones is no candidate
        (("frontend", "payments"), "checkout"),
    ],
)
def test_with_service_agrees_with_root_causes_of_the_whole_set(
    services: tuple[str, ...], joining: str
) -> None:
    before = set(CHAIN.root_causes(services))
    after = with_service(before, dict.fromkeys(services, 0.0), joining, CHAIN)
    assert after == set(CHAIN.root_causes((*services, joining)))


@pytest.mark.parametrize(
    ("services", "root", "expected"),
    [
        # every caller of the root, directly or not, sorted
        (("payments-db", "frontend", "checkout"), "payments-db", ["checkout", "frontend"]),
        # the root itself and its dependencies are no symptoms
        (("payments", "payments-db", "checkout"), "payments", ["checkout"]),
        # an unrelated service is no symptom
        (("search", "payments"), "payments", []),
    ],
)
def test_symptoms(services: tuple[str, ...], root: str, expected: list[str]) -> None:
    assert symptoms(services, root, CHAIN) == expected
