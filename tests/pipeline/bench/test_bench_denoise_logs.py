"""The de-noising benchmark without and with log streams: the verdict and one real scenario."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.bench.denoise import LogVerdict, Score, log_verdict
from pipeline.cli import main


def scored(
    detected: int, pages: int, root_correct: int, pageable: int = 0, false_pages: int = 0
) -> Score:
    return Score(
        detected=detected,
        pages_on_detected=pages,
        root_correct=root_correct,
        pageable=pageable or detected,
        false_pages=false_pages,
    )


@pytest.mark.parametrize(
    ("without", "with_logs", "expected"),
    [
        # the same figures: no harm
        (scored(7, 7, 7), scored(7, 7, 7), LogVerdict(True, True)),
        # one more page for the same incidents: pages per incident rose
        (scored(7, 7, 7), scored(7, 8, 7), LogVerdict(False, True)),
        # one root cause fewer named right: the share fell
        (scored(7, 7, 7), scored(7, 7, 6), LogVerdict(True, False)),
        # more incidents detected at the same ratios (1.00, 6/7 = 12/14): no harm, exactly
        (scored(7, 7, 6), scored(14, 14, 12), LogVerdict(True, True)),
        # fewer pages per incident and more right roots: better
        (scored(4, 6, 3), scored(4, 4, 4), LogVerdict(True, True)),
        # nothing detected in either run (a scenario of blips): nothing to compare
        (scored(0, 0, 0), scored(0, 0, 0), LogVerdict(True, True)),
        # one incident of two missed with logs, the ratios on the one found unchanged
        (scored(2, 2, 2), scored(1, 1, 1, pageable=2), LogVerdict(True, True, False, True)),
        # pages that match no incident leave pages per detected incident as they were
        (scored(3, 3, 3), scored(3, 3, 3, false_pages=22), LogVerdict(True, True, True, False)),
    ],
)
def test_log_verdict(without: Score, with_logs: Score, expected: LogVerdict) -> None:
    verdict = log_verdict(without, with_logs)
    assert verdict == expected
    assert verdict.ok is (expected == LogVerdict(True, True, True, True))


def test_stopped_scenario_without_and_with_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "denoise", "--scenario", "stopped", "--logs", "--out", str(tmp_path)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| stopped |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # scenario, log records, then each figure as "without / with"
    assert cells[0] == "stopped"
    assert int(cells[1].replace(",", "")) > 40_000
    assert cells[2:7] == ["1 / 1", "1.00 / 1.00", "100.0% / 100.0%", "0 / 0", "100.0% / 100.0%"]
    without_s, with_s = (int(part.removesuffix(" s")) for part in cells[9].split(" / "))
    # the stopped service's heartbeat falls silent too: logs page no later than metrics alone
    assert with_s <= without_s <= 300
    assert "logs do not hurt de-noising" in text
    data = orjson.loads((tmp_path / "results.json").read_bytes())
    assert data["stopped"]["with_logs"]["false pages"] == "0"
    assert data["stopped"]["log_records"] == int(cells[1].replace(",", ""))
    assert set(data["verdict"].values()) == {True}
