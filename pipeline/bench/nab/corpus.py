"""NAB's corpus on disk: the data files with their labelled windows, their halves, and the
cost profiles, read from a NAB checkout's root (`data/`, `labels/combined_windows.json`,
`profiles.json`).

Halves: within each NAB category, files are ordered by the SHA-256 of their path relative
to `data/` (e.g. `realKnownCause/nyc_taxi.csv`) and dealt alternately to half `a` (tune:
designs are chosen on it) and half `b` (test: reported, never tuned on). The split is fixed
and balanced per category.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pipeline.bench.nab.score import (
    PROFILE_NAMES,
    CostProfile,
    Window,
    load_profiles,
    windows_from_timestamps,
)
from pipeline.errors import QuietpagerError

__all__ = ["Half", "NabFile", "load_corpus", "load_cost_profiles", "split_half"]

Half = Literal["a", "b", "all"]


@dataclass(frozen=True, slots=True)
class NabFile:
    """One NAB data file with its labels and its half."""

    relative_path: str
    timestamps: tuple[str, ...]
    seconds: tuple[float, ...]  # the timestamps as epoch seconds (UTC when they name no zone)
    values: tuple[float, ...]
    windows: tuple[Window, ...]
    half: Literal["a", "b"]

    @property
    def category(self) -> str:
        """The NAB category folder, e.g. `realKnownCause`."""
        return self.relative_path.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The file name, e.g. `nyc_taxi.csv`."""
        return self.relative_path.rsplit("/", 1)[-1]


def split_half(relative_paths: Iterable[str]) -> dict[str, Literal["a", "b"]]:
    """Each path's half: per category, ordered by SHA-256 of the path, dealt a, b, a, b...

    >>> split_half(["x/one.csv", "x/two.csv", "y/three.csv"])
    {'x/two.csv': 'a', 'x/one.csv': 'b', 'y/three.csv': 'a'}
    """
    by_category: dict[str, list[str]] = {}
    for path in relative_paths:
        by_category.setdefault(path.split("/", 1)[0], []).append(path)
    halves: dict[str, Literal["a", "b"]] = {}
    for category in sorted(by_category):
        ordered = sorted(
            by_category[category], key=lambda p: hashlib.sha256(p.encode()).hexdigest()
        )
        for i, path in enumerate(ordered):
            halves[path] = "a" if i % 2 == 0 else "b"
    return halves


def load_corpus(root: Path, half: Half = "all") -> list[NabFile]:
    """The NAB files under `root` (`data/`, `labels/combined_windows.json`) in one half or all."""
    data = root / "data"
    labels_path = root / "labels" / "combined_windows.json"
    if not data.is_dir() or not labels_path.is_file():
        raise QuietpagerError(
            f"{root}: not a NAB directory (needs data/ and labels/combined_windows.json)"
        )
    with labels_path.open(encoding="utf-8") as handle:
        labels: dict[str, list[list[str]]] = json.load(handle)
    paths = sorted(p.relative_to(data).as_posix() for p in data.glob("*/*.csv"))
    if not paths:
        raise QuietpagerError(f"{data}: no NAB data files")
    halves = split_half(paths)
    files = []
    for relative in paths:
        if half != "all" and halves[relative] != half:
            continue
        if relative not in labels:
            raise QuietpagerError(f"{labels_path}: no labels for {relative}")
        stamps, values = _read_series(data / relative)
        parsed = [datetime.fromisoformat(s) for s in stamps]
        limits = [
            (datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in labels[relative]
        ]
        files.append(
            NabFile(
                relative_path=relative,
                timestamps=tuple(stamps),
                seconds=tuple(
                    (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp() for d in parsed
                ),
                values=tuple(values),
                windows=tuple(windows_from_timestamps(parsed, limits)),
                half=halves[relative],
            )
        )
    return files


def _read_series(path: Path) -> tuple[list[str], list[float]]:
    stamps: list[str] = []
    values: list[float] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise QuietpagerError(f"{path}: expected a 'timestamp,value' header")
        for row in reader:
            stamps.append(row[0])
            values.append(float(row[1]))
    return stamps, values


def load_cost_profiles(root: Path) -> list[CostProfile]:
    """The cost profiles of `PROFILE_NAMES`, in that order, from `root/profiles.json`."""
    profiles_path = root / "profiles.json"
    if not profiles_path.is_file():
        raise QuietpagerError(f"{root}: missing profiles.json")
    by_name = {profile.name: profile for profile in load_profiles(profiles_path)}
    missing = [p for p in PROFILE_NAMES if p not in by_name]
    if missing:
        raise QuietpagerError(f"{profiles_path}: missing profiles {', '.join(missing)}")
    return [by_name[name] for name in PROFILE_NAMES]
