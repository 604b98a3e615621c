"""The NAB corpus read from a tiny NAB-layout directory: rows, windows and halves."""

from __future__ import annotations

from pathlib import Path

from pipeline.bench.nab.corpus import load_corpus, split_half
from pipeline.bench.nab.score import Window
from tests.nab_layout import write_nab


def test_split_is_deterministic_and_balanced_per_category() -> None:
    paths = [f"cat{c}/file{i}.csv" for c in range(3) for i in range(5)]
    halves = split_half(paths)
    assert halves == split_half(reversed(paths))
    for c in range(3):
        in_a = sum(1 for i in range(5) if halves[f"cat{c}/file{i}.csv"] == "a")
        assert in_a == 3  # five files deal a, b, a, b, a


def test_load_corpus_reads_rows_windows_and_halves(tmp_path: Path) -> None:
    write_nab(tmp_path)
    files = load_corpus(tmp_path)
    assert [f.relative_path for f in files] == [
        "artificialCalm/calm.csv",
        "artificialCalm/flat.csv",
        "realThings/one.csv",
        "realThings/two.csv",
    ]
    assert files[2].windows == (Window(290, 319),)
    assert {f.half for f in files if f.category == "realThings"} == {"a", "b"}
    assert len(load_corpus(tmp_path, "a")) == 2
