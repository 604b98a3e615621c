"""Reading the per-file scores NAB publishes for its detectors."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.bench.nab.published import read_published
from pipeline.errors import QuietpagerError

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
FILES = ["realThings/one.csv", "realThings/two.csv", "artificialCalm/flat.csv"]
HEADER = [
    "Detector",
    "Profile",
    "File",
    "Threshold",
    "Score",
    "TP",
    "TN",
    "FP",
    "FN",
    "Total_Count",
]


def _rows(detector: str, profile: str, scores: dict[str, float]) -> list[list[str]]:
    threshold = {"standard": "0.5", "reward_low_FP_rate": "0.6", "reward_low_FN_rate": "0.4"}
    rows = [
        [detector, profile, name, threshold[profile], repr(score), "1", "300", "0", "30", "340"]
        for name, score in scores.items()
    ]
    total = sum(scores.values())
    return [*rows, ["Totals", "", "", "", repr(total), "3", "900", "0", "90", "1020"]]


def _write(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


SCORES = {
    "standard": {
        "realThings/one.csv": 0.85,
        "realThings/two.csv": -1.0,
        "artificialCalm/flat.csv": -0.11,
    },
    "reward_low_FP_rate": {
        "realThings/one.csv": 0.8,
        "realThings/two.csv": -1.0,
        "artificialCalm/flat.csv": 0.0,
    },
    "reward_low_FN_rate": {
        "realThings/one.csv": 0.9,
        "realThings/two.csv": -2.0,
        "artificialCalm/flat.csv": -0.11,
    },
}


def _published(root: Path, detector: str = "Seer") -> Path:
    """A detector folder as NAB lays it out, plus a result file that must be ignored."""
    folder = root / detector
    for profile in PROFILES:
        _write(
            folder / f"{detector}_{profile}_scores.csv", _rows(detector, profile, SCORES[profile])
        )
    _write(
        folder / "realThings" / f"{detector}_one.csv",
        [["2015-03-01 00:00:00", "0.1"]],
        ["timestamp", "anomaly_score"],
    )
    return folder


def test_reads_every_profile_at_its_threshold(tmp_path: Path) -> None:
    published = read_published(_published(tmp_path), FILES, PROFILES)
    assert published.detector == "Seer"
    assert published.thresholds == {
        "standard": 0.5,
        "reward_low_FP_rate": 0.6,
        "reward_low_FN_rate": 0.4,
    }
    assert published.raw == SCORES


def test_rows_for_files_not_run_are_skipped(tmp_path: Path) -> None:
    published = read_published(_published(tmp_path), ["realThings/two.csv"], PROFILES)
    assert published.raw["reward_low_FN_rate"] == {"realThings/two.csv": -2.0}


def _edit(path: Path, change: Callable[[list[list[str]]], None]) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    change(rows)
    _write(path, rows[1:], rows[0])


def _set(row: int, column: str, value: str) -> Callable[[list[list[str]]], None]:
    def change(rows: list[list[str]]) -> None:
        rows[row][HEADER.index(column)] = value

    return change


def _drop(column: str) -> Callable[[list[list[str]]], None]:
    def change(rows: list[list[str]]) -> None:
        at = rows[0].index(column)
        for row in rows:
            del row[at]

    return change


def _duplicate(rows: list[list[str]]) -> None:
    rows.insert(2, list(rows[1]))


def _remove_row(rows: list[list[str]]) -> None:
    del rows[2]


STANDARD_CSV = "Seer_standard_scores.csv"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / STANDARD_CSV).unlink(), "Seer_standard_scores.csv: missing"),
        (lambda f: _edit(f / STANDARD_CSV, _drop("Score")), "no 'Score' column"),
        (lambda f: _edit(f / STANDARD_CSV, _drop("Threshold")), "no 'Threshold' column"),
        (
            lambda f: _edit(f / STANDARD_CSV, _set(2, "Score", "high")),
            "scores.csv:3: Score 'high' is not a number",
        ),
        (
            lambda f: _edit(f / STANDARD_CSV, _set(2, "Score", "inf")),
            "scores.csv:3: Score 'inf' is not finite",
        ),
        (
            lambda f: _edit(f / STANDARD_CSV, _set(2, "Score", "nan")),
            "scores.csv:3: Score 'nan' is not finite",
        ),
        (
            lambda f: _edit(f / STANDARD_CSV, _set(3, "Threshold", "0.7")),
            "scores.csv:4: threshold 0.7 where earlier rows have 0.5",
        ),
        (
            lambda f: _edit(f / STANDARD_CSV, _set(1, "Detector", "Other")),
            "scores.csv:2: Detector 'Other' where 'Seer'",
        ),
        (
            lambda f: _edit(f / STANDARD_CSV, _set(1, "Profile", "reward_low_FN_rate")),
            "scores.csv:2: Profile 'reward_low_FN_rate' where 'standard'",
        ),
        (
            lambda f: _edit(f / STANDARD_CSV, _duplicate),
            "scores.csv:3: a second row for realThings/one.csv",
        ),
        (
            lambda f: _edit(f / STANDARD_CSV, _remove_row),
            "scores.csv: no row for realThings/two.csv",
        ),
        (
            lambda f: (f / "Seer_reward_low_FN_rate_scores.csv").unlink(),
            "Seer_reward_low_FN_rate_scores.csv: missing",
        ),
    ],
)
def test_bad_published_scores_are_named(
    tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    folder = _published(tmp_path)
    damage(folder)
    with pytest.raises(QuietpagerError) as caught:
        read_published(folder, FILES, PROFILES)
    assert message in str(caught.value)


def test_missing_rows_are_counted(tmp_path: Path) -> None:
    folder = _published(tmp_path)
    files = [*FILES, "realThings/three.csv", "realThings/four.csv"]
    with pytest.raises(QuietpagerError, match=r"no row for realThings/four.csv and 1 more"):
        read_published(folder, files, PROFILES)


def test_a_folder_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(QuietpagerError, match="no such folder of published scores"):
        read_published(tmp_path / "ARTime", FILES, PROFILES)


def test_a_results_folder_is_not_a_detector(tmp_path: Path) -> None:
    _published(tmp_path / "results")
    with pytest.raises(QuietpagerError) as caught:
        read_published(tmp_path / "results", FILES, PROFILES)
    message = str(caught.value)
    assert "results: no results_<profile>_scores.csv files" in message
    assert f"name one detector's folder, e.g. {tmp_path / 'results' / 'Seer'}" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuietpagerError, match=r"no empty_<profile>_scores\.csv files$"):
        read_published(tmp_path / "empty", FILES, PROFILES)
