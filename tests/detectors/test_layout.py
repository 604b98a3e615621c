"""Laying described fields out end to end: offsets, group starts, starting values."""

from __future__ import annotations

import pytest

from detectors.layout import Field, Layout, lay_out


@pytest.mark.parametrize(
    ("groups", "offsets", "values"),
    [
        # one group: its fields one after the other, and where the group starts
        ([("a", (Field("x", 1.0), Field("y", 2.0)))], {"a": 0, "a.x": 0, "a.y": 1}, (1.0, 2.0)),
        # a field of size 3 takes three floats, all starting at its value
        (
            [("a", (Field("ring", 0.5, 3), Field("n")))],
            {"a": 0, "a.ring": 0, "a.n": 3},
            (0.5, 0.5, 0.5, 0.0),
        ),
        # a field of size 0 takes no room: the next one starts where it would have
        (
            [("a", (Field("none", 9.0, 0),)), ("b", (Field("x"),))],
            {"a": 0, "a.none": 0, "b": 0, "b.x": 0},
            (0.0,),
        ),
        # an unnamed group names its fields alone and records no start
        ([("", (Field("x"), Field("y")))], {"x": 0, "y": 1}, (0.0, 0.0)),
        # a group laid out again in two pieces keeps its first start
        (
            [("a", (Field("x"),)), ("b", (Field("y"),)), ("a", (Field("z"),))],
            {"a": 0, "a.x": 0, "b": 1, "b.y": 1, "a.z": 2},
            (0.0, 0.0, 0.0),
        ),
    ],
)
def test_lay_out(
    groups: list[tuple[str, tuple[Field, ...]]],
    offsets: dict[str, int],
    values: tuple[float, ...],
) -> None:
    layout = lay_out(groups)
    assert layout == Layout(offsets, values)
    assert layout.size == len(values)


def test_a_field_laid_out_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"a\.x is laid out twice"):
        lay_out([("a", (Field("x"),)), ("a", (Field("x"),))])


def test_an_unknown_name_has_no_offset() -> None:
    with pytest.raises(KeyError):
        lay_out([("a", (Field("x"),))]).offset("a.y")
