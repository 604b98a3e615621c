"""A run's scores per column and profile, on a clean detection."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.bench.nab.command import run_nab
from tests.nab_layout import write_nab


def test_bench_nab_scores_a_clean_detection(tmp_path: Path) -> None:
    write_nab(tmp_path)
    console = Console(file=io.StringIO(), width=200)
    (report,) = run_nab(tmp_path, ["golden"], console=console)
    # The per-point golden model fires only on the shift, 10 rows into each 30-row window
    # (the shipped model also fires on the records a young series sets): the hit is worth
    # h = sigma(-20/30) / sigma(-1) = 0.943742 a window; with 2 windows, standard and low FP
    # score 100 * (2h + 2) / 4, low FN 100 * (2h + 4) / 6.
    corpus = report.columns["corpus"]
    assert corpus["standard"].score == pytest.approx(97.1871, abs=1e-3)
    assert corpus["reward_low_FP_rate"].score == pytest.approx(97.1871, abs=1e-3)
    assert corpus["reward_low_FN_rate"].score == pytest.approx(98.1247, abs=1e-3)
    # At 0.99 the noise also fires now and then: a lower score, the same windows.
    assert 0 < report.columns["at 0.99"]["standard"].score < corpus["standard"].score
    assert corpus["standard"].threshold > 0.99
    # One window per half: half a alone scores 100 * (h + 1) / 2, the same figure.
    assert report.columns["tune a"]["standard"].score == pytest.approx(97.1871, abs=1e-3)
    assert report.columns["test b"]["standard"].score <= 100.0
