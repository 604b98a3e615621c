"""The service call graph from the config, used to tell a root cause from its symptoms.

`topology:` maps each service to the services it calls (its dependencies). A fault flows
upstream: when a dependency breaks, its callers show symptoms. Services the config never
names are isolated: no dependencies, no callers, related only to themselves. Cycles are
allowed and handled: services on one cycle explain each other, so none of them hides another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping


def _reachable(start: str, edges: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """Every node reachable from `start` along `edges`, `start` itself excluded."""
    seen: set[str] = set()
    stack = list(edges.get(start, ()))
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(edges.get(node, ()))
    seen.discard(start)
    return frozenset(seen)


class Topology:
    """Who calls whom, with cached transitive closures (the graph never changes after build).

    >>> t = Topology({"frontend": ["checkout"], "checkout": ["payments-db"]})
    >>> sorted(t.transitive_dependencies("frontend"))
    ['checkout', 'payments-db']
    >>> t.root_causes(["frontend", "checkout", "payments-db"])
    ['payments-db']
    """

    def __init__(self, calls: Mapping[str, Iterable[str]] | None = None) -> None:
        callees: dict[str, set[str]] = {}
        callers: dict[str, set[str]] = {}
        for service, dependencies in (calls or {}).items():
            callees.setdefault(service, set())
            for dependency in dependencies:
                # A self-call explains nothing about root cause (the config rejects it too).
                if dependency == service:
                    continue
                callees[service].add(dependency)
                callees.setdefault(dependency, set())
                callers.setdefault(dependency, set()).add(service)
        self._callees = {name: frozenset(deps) for name, deps in callees.items()}
        self._callers = {name: frozenset(users) for name, users in callers.items()}
        self._down: dict[str, frozenset[str]] = {}
        self._up: dict[str, frozenset[str]] = {}
        self._related: dict[str, frozenset[str]] = {}

    @property
    def services(self) -> frozenset[str]:
        """Every service the topology names, as caller or callee."""
        return frozenset(self._callees)

    def dependencies(self, service: str) -> frozenset[str]:
        """The services `service` calls directly."""
        return self._callees.get(service, frozenset())

    def dependents(self, service: str) -> frozenset[str]:
        """The services that call `service` directly."""
        return self._callers.get(service, frozenset())

    def transitive_dependencies(self, service: str) -> frozenset[str]:
        """Every service `service` calls, directly or through others (itself excluded)."""
        cached = self._down.get(service)
        if cached is None:
            cached = self._down[service] = _reachable(service, self._callees)
        return cached

    def transitive_dependents(self, service: str) -> frozenset[str]:
        """Every service that calls `service`, directly or through others (itself excluded)."""
        cached = self._up.get(service)
        if cached is None:
            cached = self._up[service] = _reachable(service, self._callers)
        return cached

    def related_services(self, service: str) -> frozenset[str]:
        """`service` and everything upstream or downstream of it: what may share its incident."""
        cached = self._related.get(service)
        if cached is None:
            cached = self._related[service] = (
                self.transitive_dependencies(service)
                | self.transitive_dependents(service)
                | {service}
            )
        return cached

    def related(self, a: str, b: str) -> bool:
        """Whether one of `a`, `b` calls the other, directly or transitively (or they are one)."""
        return (
            a == b or b in self.transitive_dependencies(a) or a in self.transitive_dependencies(b)
        )

    def root_causes(self, services: Iterable[str]) -> list[str]:
        """The most downstream of `services`: those none of whose dependencies is also listed.

        A dependency on the same cycle does not count, so a cycle whose members are all listed
        yields all of them. The result is sorted by name.
        """
        return self._frontier(services, self.transitive_dependencies)

    def entry_points(self, services: Iterable[str]) -> list[str]:
        """The most upstream of `services` (the mirror of `root_causes`): where users feel it."""
        return self._frontier(services, self.transitive_dependents)

    @staticmethod
    def _frontier(services: Iterable[str], beyond: Callable[[str], frozenset[str]]) -> list[str]:
        listed = frozenset(services)
        frontier = []
        for service in listed:
            # A listed service beyond this one only disqualifies it if the two are not on
            # one cycle (a cycle-mate reaches back to it).
            if all(service in beyond(other) for other in beyond(service) & listed):
                frontier.append(service)
        return sorted(frontier)

    def __repr__(self) -> str:
        return f"Topology({len(self._callees)} services)"
