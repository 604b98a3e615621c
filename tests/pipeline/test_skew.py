"""Which input partitions the detect stage holds back: a table of cases."""

from __future__ import annotations

import math

import pytest

from pipeline.skew import held_partitions

M, L, M2 = "metrics-0", "logs-0", "metrics-1"


@pytest.mark.parametrize(
    ("newest", "backlogged", "held"),
    [
        # nothing backlogged: nobody waits for anybody
        ({M: 1000.0, L: 100.0}, set(), set()),
        # the backlogged logs are 900 s behind: metrics wait
        ({M: 1000.0, L: 100.0}, {L}, {M}),
        # both backlogged: the one ahead waits
        ({M: 1000.0, L: 100.0}, {M, L}, {M}),
        # the lead is exactly max_skew: not held; a hair more: held
        ({M: 160.0, L: 100.0}, {L}, set()),
        ({M: 160.5, L: 100.0}, {L}, {M}),
        # a quiet partition far behind, with nothing left to read, holds nobody back
        ({M: 1000.0, L: 100.0}, {M}, set()),
        # the slowest backlogged partition sets the floor, not the slowest partition
        ({M: 1000.0, M2: 500.0, L: 100.0}, {M2}, {M}),
        ({M: 1000.0, M2: 500.0, L: 100.0}, {M2, L}, {M, M2}),
        # a backlogged partition not read yet may hold the oldest records: all others wait
        ({M: 1000.0, L: None}, {L}, {M}),
        # and a partition not read yet is never held itself
        ({M: None, L: 100.0}, {L}, set()),
        ({M: None, L: None}, {M, L}, set()),
        # a backlogged partition unknown to `newest` (assigned since) also counts as slowest
        ({M: 1000.0}, {L}, {M}),
    ],
)
def test_held_partitions(
    newest: dict[str, float | None], backlogged: set[str], held: set[str]
) -> None:
    assert held_partitions(newest, backlogged, 60.0) == held


def test_zero_skew_holds_any_lead() -> None:
    assert held_partitions({M: 100.001, L: 100.0}, {L}, 0.0) == {M}
    assert held_partitions({M: 100.0, L: 100.0}, {L}, 0.0) == set()


@pytest.mark.parametrize("skew", [-1.0, math.nan])
def test_bad_skew_is_refused(skew: float) -> None:
    with pytest.raises(ValueError, match="max_skew"):
        held_partitions({M: 1.0}, {M}, skew)
