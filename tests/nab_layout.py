"""A tiny NAB-layout directory and NAB-format result files, shared by the `bench nab`
tests (tests/pipeline/bench/nab/)."""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.bench.nab.corpus import load_corpus

N_ROWS = 400
START = datetime(2015, 3, 1)


def row_stamp(i: int) -> str:
    return (START + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


def write_nab(root: Path) -> None:
    """Two categories of two files; a level shift at row 300 in each `real*` file."""
    rng = random.Random(7)
    windows: dict[str, list[list[str]]] = {}
    for category, names in (("realThings", ["one", "two"]), ("artificialCalm", ["flat", "calm"])):
        folder = root / "data" / category
        folder.mkdir(parents=True)
        for name in names:
            shift = category.startswith("real")
            with (folder / f"{name}.csv").open("w", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["timestamp", "value"])
                for i in range(N_ROWS):
                    level = 50.0 if shift and i >= 300 else 10.0
                    writer.writerow([row_stamp(i), f"{level + rng.gauss(0, 1):.3f}"])
            key = f"{category}/{name}.csv"
            windows[key] = (
                [[row_stamp(290) + ".000000", row_stamp(319) + ".000000"]] if shift else []
            )
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    matrix = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}
    profiles = {
        "standard": {"CostMatrix": matrix},
        "reward_low_FP_rate": {"CostMatrix": {**matrix, "fpWeight": 0.22}},
        "reward_low_FN_rate": {"CostMatrix": {**matrix, "fnWeight": 2.0}},
    }
    (root / "profiles.json").write_text(json.dumps(profiles))


def write_result(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_oracle(root: Path, nab: Path) -> None:
    """An `oracle` detector in NAB's own results layout (extra columns included) that fires
    on the first row of each window and nowhere else."""
    for nab_file in load_corpus(nab):
        firsts = {window.first for window in nab_file.windows}
        write_result(
            root / "oracle" / nab_file.category / f"oracle_{nab_file.name}",
            ["timestamp", "value", "anomaly_score", "raw_score", "label", "S(t)_standard"],
            [
                [stamp, str(value), "1.0" if i in firsts else "0.0", "0.5", "0", "0"]
                for i, (stamp, value) in enumerate(
                    zip(nab_file.timestamps, nab_file.values, strict=True)
                )
            ],
        )
