"""`replay`: the stage cores offline, in event time, byte-identical across runs."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from pipeline.cli import main
from pipeline.config import Config, parse_config
from pipeline.replay import replay_lines
from pipeline.simulate import Blip, Fault, Scenario, generate

SCENARIO = Scenario(
    duration_s=1500.0,
    faults=(Fault(root="payments-db", onset_s=700.0, duration_s=300.0),),
    blips=(Blip(service="catalog", onset_s=500.0),),
)


def _config() -> Config:
    return parse_config(
        {
            "topology": SCENARIO.topology,
            "correlate": {"hold_for": "60s", "resolve_after": "2m"},
            "receivers": [
                {
                    "name": "oncall",
                    "type": "pagerduty",
                    "url": "http://127.0.0.1:9/v2/enqueue",
                    "routing_key": {"env": "QP_REPLAY_KEY"},
                },
                {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/am"},
            ],
            "route": {"receivers": ["oncall", "am"]},
        }
    )


def _input(extra: bytes = b"") -> bytes:
    lines = [orjson.dumps(points) for _, points in generate(SCENARIO)]
    return b"\n".join(lines[:40]) + b"\n" + extra + b"\n".join(lines[40:]) + b"\n"


def _replay(data: bytes) -> tuple[bytes, object]:
    out = io.BytesIO()
    summary = replay_lines(_config(), io.BytesIO(data), out)
    return out.getvalue(), summary


def test_one_incident_gives_one_trigger_and_one_resolve_per_receiver() -> None:
    output, _ = _replay(_input())
    records = [orjson.loads(line) for line in output.splitlines()]
    assert [
        (r["receiver"], r["body"].get("event_action") or r["body"]["status"]) for r in records
    ] == [("oncall", "trigger"), ("am", "firing"), ("oncall", "resolve"), ("am", "resolved")]
    trigger = records[0]
    assert trigger["at"] == "2026-11-26T09:12:40.000Z"  # onset 09:11:40 plus the 60 s hold
    assert trigger["body"]["routing_key"] == "REDACTED"
    assert trigger["body"]["payload"]["component"] == "payments-db"
    assert records[2]["body"]["dedup_key"] == trigger["body"]["dedup_key"]


def test_output_is_byte_identical_across_runs() -> None:
    first, _ = _replay(_input())
    second, _ = _replay(_input())
    assert first
    assert first == second


def test_bad_lines_are_counted_and_skipped() -> None:
    output, summary = _replay(_input(b'not json\n{"name": "x", "value": 1}\n\n'))
    assert summary.rejects == {"not_json": 1, "missing_field": 1}  # type: ignore[attr-defined]
    assert len(output.splitlines()) == 4


def test_cli_replay_writes_file_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(orjson.dumps(_config().model_dump(mode="json")).decode(), "utf-8")
    source = tmp_path / "in.jsonl"
    source.write_bytes(_input())
    out = tmp_path / "out" / "pages.jsonl"
    assert main(["replay", "--config", str(config_path), str(source), "--out", str(out)]) == 0
    assert len(out.read_bytes().splitlines()) == 4
    assert "1 triggers, 1 resolves" in capsys.readouterr().err


def test_cli_reports_bad_config_and_missing_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("receivers: []\nroute: {receivers: [x]}\n", "utf-8")
    assert main(["check-config", str(bad)]) == 2
    assert f"{bad}: receivers" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(orjson.dumps(_config().model_dump(mode="json")).decode(), "utf-8")
    assert (
        main(
            [
                "replay",
                "--config",
                str(good),
                str(tmp_path / "nope.jsonl"),
                "--out",
                str(tmp_path / "o.jsonl"),
            ]
        )
        == 2
    )
    assert "no such input file" in capsys.readouterr().err


def test_cli_reports_an_out_path_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --out that is a folder used to end in an IsADirectoryError traceback."""
    good = tmp_path / "good.yaml"
    good.write_text(orjson.dumps(_config().model_dump(mode="json")).decode(), "utf-8")
    source = tmp_path / "in.jsonl"
    source.write_bytes(_input())
    argv = ["replay", "--config", str(good), str(source), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"quietpager: {tmp_path}: Is a directory"


def test_cli_warns_when_anomalies_were_dropped_as_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines stamped a day ahead by many agents move event time past the incident, whose
    anomalies are then dropped as stale; the summary says so (it used to report only "0
    triggers"). One agent alone no longer moves event time (tests/pipeline/test_watermark.py)."""
    good = tmp_path / "good.yaml"
    good.write_text(orjson.dumps(_config().model_dump(mode="json")).decode(), "utf-8")
    ahead = [
        {"name": "up", "value": 1, "ts": SCENARIO.start + 86400, "labels": {"service": f"x{i}"}}
        for i in range(10)
    ]
    source = tmp_path / "in.jsonl"
    for extra, warned in ((b"", False), (orjson.dumps(ahead) + b"\n", True)):
        source.write_bytes(_input(extra))
        argv = ["replay", "--config", str(good), str(source), "--out", str(tmp_path / "o")]
        assert main(argv) == 0
        assert ("anomalies dropped as stale" in capsys.readouterr().err) == warned
