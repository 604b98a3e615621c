"""Public descriptions of a model part's numbers, and flat layouts built from them.

Each part of the likelihood model (`detectors.golden`, `detectors.scoring`, `detectors.views`,
`detectors.likelihood`) says what its per-point arithmetic reads (`parameter_fields()`: its
settings and the levels derived from them) and what it keeps between points
(`state_fields()`: named runs of floats and where they start). `detectors.compiled` lays its
parameter vector and its state array out from these descriptions, so a part's shape is
written down once, beside the part.

>>> layout = lay_out([("range", (Field("low", float("inf")), Field("high", float("-inf")))),
...                   ("ring", (Field("recent", 0.0, 3),))])
>>> layout.offset("range.high"), layout.offset("ring"), layout.offset("ring.recent")
(1, 2, 2)
>>> layout.size
5
>>> layout.values
(inf, -inf, 0.0, 0.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Described", "Field", "Layout", "lay_out"]


@dataclass(frozen=True, slots=True)
class Field:
    """One named run of `size` floats: a setting (`value` is its value) or a piece of state
    (`value` is where each of its floats starts)."""

    name: str
    value: float = 0.0
    size: int = 1


class Described(Protocol):
    """A model part that says which parameters its per-point arithmetic reads."""

    def parameter_fields(self) -> tuple[Field, ...]:
        """The part's parameters, in the order a layout keeps them."""
        ...


@dataclass(frozen=True, slots=True)
class Layout:
    """Groups of fields laid end to end: each field's offset (by `group.name`) and each
    group's (by `group`), the floats they start as, and the total size."""

    offsets: dict[str, int]
    values: tuple[float, ...]

    @property
    def size(self) -> int:
        """How many floats the layout holds."""
        return len(self.values)

    def offset(self, name: str) -> int:
        """Where the field `group.name` starts; KeyError for a name not laid out."""
        return self.offsets[name]


def lay_out(groups: Iterable[tuple[str, Sequence[Field]]]) -> Layout:
    """The fields of each `(group, fields)` in order, one after the other from 0."""
    offsets: dict[str, int] = {}
    values: list[float] = []
    for group, fields in groups:
        if group and group not in offsets:
            offsets[group] = len(values)  # where the group starts
        for field in fields:
            name = f"{group}.{field.name}" if group else field.name
            if name in offsets:
                raise ValueError(f"{name} is laid out twice")
            offsets[name] = len(values)
            values.extend([float(field.value)] * field.size)
    return Layout(offsets, tuple(values))
