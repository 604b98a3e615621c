"""`bench logs` on a tiny Loghub-layout directory, and its grouping-accuracy measure."""

from __future__ import annotations

import csv
import doctest
from collections.abc import Hashable, Sequence
from pathlib import Path

import pytest

import pipeline.bench.logs
from pipeline.bench.logs import (
    detect_bgl,
    grouping_accuracy,
    level_baseline,
    measure_speed,
    parse_system,
    run_logs,
)
from pipeline.cli import main

FIELDS = ["LineId", "Label", "Timestamp", "Level", "Content", "EventId", "EventTemplate"]
T0 = 1_117_838_400  # a multiple of 60


def _write(root: Path, system: str, rows: list[dict[str, str]]) -> None:
    folder = root / system
    folder.mkdir(parents=True)
    with (folder / f"{system}_2k.log_structured.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for index, row in enumerate(rows, start=1):
            writer.writerow({"LineId": str(index), **row})
    (folder / f"{system}_2k.log").write_text(
        "".join(f"{row['Content']}\n" for row in rows), encoding="utf-8"
    )


def _row(
    ts: int, content: str, event: str, level: str = "INFO", label: str = "-"
) -> dict[str, str]:
    return {
        "Label": label,
        "Timestamp": str(ts),
        "Level": level,
        "Content": content,
        "EventId": event,
        "EventTemplate": "",
    }


@pytest.fixture
def loghub(tmp_path: Path) -> Path:
    """BGL: 40 minutes of two normal templates, then three alert lines of a new FATAL one;
    Tiny: four templates, one of which the miner cannot tell from another."""
    bgl = []
    for minute in range(40):
        bgl.append(_row(T0 + minute * 60, "instruction cache parity error corrected", "E1"))
        bgl.append(_row(T0 + minute * 60 + 30, f"generating core.{minute * 37}", "E2"))
    for second in (0, 10, 20):
        bgl.append(
            _row(T0 + 45 * 60 + second, "data TLB error interrupt", "E3", "FATAL", "KERNDTLB")
        )
    _write(tmp_path, "BGL", bgl)
    tiny = (
        [_row(T0 + i, f"user {i} logged in from 10.0.0.{i}", "E1") for i in range(6)]
        + [_row(T0 + 10 + i, f"connection closed after {i} ms", "E2") for i in range(3)]
        + [
            # Ground truth keeps these apart; one word in six differs, so Drain merges them.
            _row(T0 + 20, "instance 42 lifecycle event VM Started", "E3"),
            _row(T0 + 21, "instance 42 lifecycle event VM Paused", "E4"),
        ]
    )
    _write(tmp_path, "Tiny", tiny)
    return tmp_path


@pytest.mark.parametrize(
    ("predicted", "truth", "accuracy"),
    [
        # the same partition under other names is perfect
        ([1, 1, 2], ["a", "a", "b"], 1.0),
        ([7, 9], ["b", "a"], 1.0),
        # two true groups merged into one: every line of the merged group is wrong
        ([1, 1, 1], ["a", "a", "b"], 0.0),
        # a true group split in two: its lines are wrong, the untouched group is right
        ([1, 2, 3], ["a", "a", "b"], 1 / 3),
        # one line of group b strays into a's group: both groups are wrong, c is right
        ([1, 1, 1, 2, 3], ["a", "a", "b", "b", "c"], 0.2),
        # nothing to score
        ([], [], 0.0),
    ],
)
def test_grouping_accuracy(
    predicted: Sequence[Hashable], truth: Sequence[Hashable], accuracy: float
) -> None:
    assert grouping_accuracy(predicted, truth) == pytest.approx(accuracy)


def test_grouping_accuracy_needs_one_prediction_per_line() -> None:
    with pytest.raises(ValueError, match="2 predictions for 3 lines"):
        grouping_accuracy([1, 2], ["a", "b", "c"])


def test_parse_system_scores_the_miner(loghub: Path) -> None:
    result = parse_system(loghub, "Tiny")
    # The two lifecycle lines merge: 2 of 11 lines are wrong.
    assert (result.lines, result.true_templates, result.mined_templates) == (11, 4, 3)
    assert result.accuracy == pytest.approx(9 / 11)


def test_bgl_detection_flags_the_new_failure(loghub: Path) -> None:
    found = detect_bgl(loghub)
    assert (found.lines, found.alert_lines, found.flagged_lines) == (83, 3, 3)
    assert (found.line_precision, found.line_recall, found.line_f1) == (1.0, 1.0, 1.0)
    assert (found.windows, found.alert_windows, found.flagged_windows) == (41, 1, 1)
    assert found.window_f1 == 1.0


def test_level_baseline(loghub: Path) -> None:
    # Only the three alert lines are FATAL in the fixture.
    assert level_baseline(loghub) == (1.0, 1.0)
    assert level_baseline(loghub, "info") == (3 / 83, 1.0)


def test_speed_is_measured_over_every_line(loghub: Path) -> None:
    speed = measure_speed(loghub, ["BGL", "Tiny"], repeats=1)
    assert speed.lines == 94
    assert speed.stage_lines_per_s > 0
    assert speed.decode_and_stage_lines_per_s > 0


def test_run_logs_prints_the_tables(loghub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = run_logs(loghub, ["BGL", "Tiny"])
    assert [r.system for r in results] == ["BGL", "Tiny"]
    out = capsys.readouterr().out
    assert "Drain published: 0.865" in out
    assert "1-minute window" in out
    assert "lines/s" in out


def test_cli_bench_logs(loghub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "logs", "--data", str(loghub), "--system", "Tiny"]) == 0
    out = capsys.readouterr().out
    assert "Tiny" in out
    assert "BGL" not in out


def test_cli_bench_logs_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "logs", "--data", str(tmp_path / "missing")]) == 2
    assert "no Loghub checkout" in capsys.readouterr().err


def test_doctests() -> None:
    result = doctest.testmod(pipeline.bench.logs)
    assert result.attempted > 0
    assert result.failed == 0
