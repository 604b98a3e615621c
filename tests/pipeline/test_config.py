"""Config loading: every shipped file loads; each semantic error names file, key path and value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config, resolve_http_token, resolve_secrets
from pipeline.errors import ConfigError
from pipeline.model import Signal

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {
    "receivers": [
        {
            "name": "oncall",
            "type": "pagerduty",
            "url": "http://127.0.0.1:8080/v2/enqueue",
            "routing_key": {"env": "QP_TEST_KEY"},
        }
    ],
    "route": {"receivers": ["oncall"]},
}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert config.receivers
    for name in config.route.receivers:
        config.receiver(name)


def test_defaults_follow_design(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.topics.metrics == "telemetry.metrics"
    assert config.topics.dlq == "quietpager.dlq"
    assert config.http.listen.startswith("127.0.0.1:")  # loopback unless configured otherwise
    assert set(config.detect.thresholds) == set(Signal)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        # an unknown key at the top
        ({"colour": "blue"}, "colour: unknown key (got 'blue')"),
        # an unknown key deep inside
        ({"correlate": {"hold_four": "1m"}}, "correlate.hold_four: unknown key"),
        # a duration that is not one
        ({"correlate": {"hold_for": "soon"}}, "correlate.hold_for: not a duration: 'soon'"),
        (  # it passed check-config, then crashed the correlator at start
            {
                "silences": [
                    {
                        "matchers": ["service!=checkout"],
                        "starts_at": "2026-01-01T19:12:00Z",
                        "ends_at": "2026-01-01T19:42:00Z",
                    }
                ]
            },
            "silences.0.matchers: at least one matcher must not match the empty string",
        ),
        (  # replay crashed writing a page a year 275817 away
            {"correlate": {"resolve_after": "100000000d"}},
            "correlate.resolve_after: duration '100000000d' is longer than ten years",
        ),
        # a route to a receiver nobody defined
        ({"route": {"receivers": ["nobody"]}}, "undefined receiver 'nobody'"),
        # a URL that is not http
        (
            {
                "receivers": [{"name": "x", "type": "alertmanager", "url": "ftp://x"}],
                "route": {"receivers": ["x"]},
            },
            "receivers.0.url: must be an http:// or https:// URL",
        ),
        # a pagerduty receiver without a routing key
        (
            {
                "receivers": [{"name": "x", "type": "pagerduty", "url": "http://h/"}],
                "route": {"receivers": ["x"]},
            },
            "a pagerduty receiver needs routing_key",
        ),
        # a threshold outside (0, 1)
        ({"detect": {"thresholds": {"latency": 1.5}}}, "threshold for latency must lie in (0, 1)"),
        # a silence whose regex is broken
        (
            {
                "silences": [
                    {
                        "matchers": ["service=~("],
                        "starts_at": "2026-01-01T00:00:00Z",
                        "ends_at": "2026-01-01T01:00:00Z",
                    }
                ]
            },
            "silences.0.matchers",
        ),
        # a silence that ends before it starts
        (
            {
                "silences": [
                    {
                        "matchers": ["service=a"],
                        "starts_at": "2026-01-01T01:00:00Z",
                        "ends_at": "2026-01-01T00:00:00Z",
                    }
                ]
            },
            "ends_at must be after starts_at",
        ),
        # a service that depends on itself
        ({"topology": {"a": ["a"]}}, "lists itself as a dependency"),
        # a bad listen address
        ({"http": {"listen": "everywhere"}}, "http.listen: must be host:port (got 'everywhere')"),
        # an input allowed to run ahead as long as anomalies stay current, or longer
        (
            {"worker": {"max_skew": "5m"}},
            "worker.max_skew (300s) must be below correlate.resolve_after (300s)",
        ),
        (
            {"worker": {"max_skew": "2m"}, "correlate": {"resolve_after": "1m"}},
            "worker.max_skew (120s) must be below correlate.resolve_after (60s)",
        ),
        ({"worker": {"max_skew": -1}}, "worker.max_skew: not a duration: -1"),
        # webhook retries that would hammer a receiver that is down, or never deliver
        *[
            (
                {
                    "receivers": [
                        {"name": "x", "type": "alertmanager", "url": "http://h/", "retry": retry}
                    ],
                    "route": {"receivers": ["x"]},
                },
                message,
            )
            for retry, message in [
                ({"initial_backoff": "0s"}, "initial_backoff must be positive"),
                ({"initial_backoff": "2s", "max_backoff": "1s"}, "max_backoff must be at least"),
                # a cap on copies sent without an answer: a count, nothing else
                (
                    {"max_unanswered": -1},
                    "retry.max_unanswered: Input should be greater than or equal to 0",
                ),
                ({"max_unanswered": True}, "retry.max_unanswered: Input should be a valid int"),
                ({"max_unanswered": "3"}, "retry.max_unanswered: Input should be a valid int"),
            ]
        ],
        # a broker probe given no time: it never answers, and /readyz would never be ready
        ({"worker": {"probe_every": "0s"}}, "worker.probe_every: must be positive"),
        # a grouping window shorter than the gap a streak allows: nothing could ever page
        (
            {"correlate": {"group_window": "0s"}},
            "group_window (0s) must be at least hold_max_gap (30s)",
        ),
        (
            {"correlate": {"group_window": "20s", "hold_max_gap": "21s"}},
            "group_window (20s) must be at least hold_max_gap (21s)",
        ),
    ],
)
def test_bad_config_messages(tmp_path: Path, patch: dict[str, object], expected: str) -> None:
    path = _write(tmp_path, {**MINIMAL, **patch})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message


@pytest.mark.parametrize(
    ("patch", "line"),
    [
        # a bad key of a mapping is quoted itself (it read "[key]: ... (got '<missing>')")
        (
            {"detect": {"thresholds": {"latencyy": 0.5}}},
            "detect.thresholds.latencyy: Input should be 'latency', 'traffic', 'errors', "
            "'saturation' or 'generic' (got 'latencyy')",
        ),
        # a rule across sections does not quote the whole file back
        (
            {"worker": {"max_skew": "10m"}},
            "<top>: worker.max_skew (600s) must be below correlate.resolve_after (300s): an "
            "anomaly that far behind the correlator's clock is dropped as stale",
        ),
    ],
)
def test_bad_config_lines_in_full(tmp_path: Path, patch: dict[str, object], line: str) -> None:
    path = _write(tmp_path, {**MINIMAL, **patch})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {line}"


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a second section used to replace the first without a word
        (
            "correlate: {hold_for: 1m}\ncorrelate: {resolve_after: 5m}\n",
            "found the key 'correlate' twice",
        ),
        ("correlate:\n  hold_for: 1m\n  hold_for: 2m\n", "found the key 'hold_for' twice"),
    ],
)
def test_a_key_given_twice_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"(?s)not valid YAML: .*{expected}") as caught:
        load_config(path)
    assert f'in "{path}", line' in str(caught.value)


def test_a_merge_key_may_still_override_what_it_merges(tmp_path: Path) -> None:
    data = yaml.safe_dump(MINIMAL)
    text = data + "x-retry: &fast {initial_backoff: 1s, max_backoff: 2s}\n"
    path = tmp_path / "merge.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="x-retry: unknown key"):  # loads, then validates
        load_config(path)


def test_a_file_that_is_not_utf8_gets_a_message(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("comment: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 12\)"):
        load_config(path)


def test_a_huge_bad_value_is_quoted_short(tmp_path: Path) -> None:
    """Nested YAML aliases expand a few lines into megabytes; the message stays short."""
    lines = ["a0: &a0 [xxxxxxxxxx, xxxxxxxxxx, xxxxxxxxxx, xxxxxxxxxx]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "a8: unknown key" in str(caught.value)
    assert len(str(caught.value)) < 5_000


def test_secret_from_env_and_file_never_in_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QP_TEST_KEY", "s3cr3t-from-env")
    config = load_config(_write(tmp_path, MINIMAL))
    keys = resolve_secrets(config)
    assert keys["oncall"].get_secret_value() == "s3cr3t-from-env"
    assert "s3cr3t" not in repr(keys)
    assert "s3cr3t" not in str(config)

    key_file = tmp_path / "key"
    key_file.write_text("s3cr3t-from-file\n", encoding="utf-8")
    data = {
        **MINIMAL,
        "receivers": [
            {
                **MINIMAL["receivers"][0],  # type: ignore[index]
                "routing_key": {"file": str(key_file)},
            }
        ],
    }
    keys = resolve_secrets(load_config(_write(tmp_path, data)))
    assert keys["oncall"].get_secret_value() == "s3cr3t-from-file"


def test_missing_secret_fails_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QP_TEST_KEY", raising=False)
    config = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(
        ConfigError, match=r"receivers\.0\.routing_key: environment variable QP_TEST_KEY is not set"
    ):
        resolve_secrets(config, "x.yaml")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "receivers.0.routing_key: the secret is empty"),
        (" k3y", "receivers.0.routing_key: the secret starts or ends with white space"),
        ("k3y\n", "receivers.0.routing_key: the secret starts or ends with white space"),
    ],
)
def test_unusable_routing_key_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    """An empty key passed start-up and crashed the notify stage at its first page, on every
    restart; a padded one would have every page refused by PagerDuty."""
    monkeypatch.setenv("QP_TEST_KEY", value)
    config = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match=re.escape(f"x.yaml: {expected}")):
        resolve_secrets(config, "x.yaml")


@pytest.mark.parametrize(
    ("token", "env", "file_text", "expected"),
    [
        (None, None, None, None),  # no token: the silences API is open (loopback by default)
        ({"env": "QP_HTTP_TOKEN"}, "t0ken", None, "t0ken"),
        ({"file": "{tmp}/token"}, None, "t0ken-from-file\n", "t0ken-from-file"),
        ({"env": "QP_HTTP_TOKEN"}, None, None, "http.token: environment variable QP_HTTP_TOKEN"),
        ({"env": "QP_HTTP_TOKEN"}, "", None, "http.token: the secret is empty"),
        ({"env": "QP_HTTP_TOKEN"}, "t0ken ", None, "http.token: the secret starts or ends"),
        ({"file": "{tmp}/token"}, None, "\n", "http.token: the secret is empty"),
        ({"file": "{tmp}/absent"}, None, None, "http.token: cannot read secret file"),
    ],
)
def test_http_token(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    token: dict[str, str] | None,
    env: str | None,
    file_text: str | None,
    expected: str | None,
) -> None:
    monkeypatch.delenv("QP_HTTP_TOKEN", raising=False)
    if env is not None:
        monkeypatch.setenv("QP_HTTP_TOKEN", env)
    if file_text is not None:
        (tmp_path / "token").write_text(file_text, encoding="utf-8")
    data: dict[str, object] = dict(MINIMAL)
    if token is not None:
        data["http"] = {"token": {k: v.format(tmp=tmp_path) for k, v in token.items()}}
    config = load_config(_write(tmp_path, data))
    if expected is None or not expected.startswith("http.token:"):
        resolved = resolve_http_token(config, "x.yaml")
        assert (None if resolved is None else resolved.get_secret_value()) == expected
        assert "t0ken" not in str(config)
    else:
        with pytest.raises(ConfigError, match=rf"^x\.yaml: {expected}"):
            resolve_http_token(config, "x.yaml")


@pytest.mark.parametrize(
    ("worker", "correlate", "expected"),
    [
        ({}, {}, 30.0),  # the default
        ({}, {"resolve_after": "20s"}, 10.0),  # unset, under a short resolve_after: half of it
        ({"max_skew": "5s"}, {"resolve_after": "20s"}, 5.0),  # set: as set
        ({"max_skew": "0s"}, {}, 0.0),
    ],
)
def test_max_skew_defaults_below_resolve_after(
    tmp_path: Path, worker: dict[str, str], correlate: dict[str, str], expected: float
) -> None:
    config = load_config(_write(tmp_path, {**MINIMAL, "worker": worker, "correlate": correlate}))
    assert config.max_skew == expected


def test_a_zero_webhook_timeout_means_no_limit(tmp_path: Path) -> None:
    receiver = {**MINIMAL["receivers"][0], "retry": {"timeout": "0s"}}  # type: ignore[index]
    config = load_config(_write(tmp_path, {**MINIMAL, "receivers": [receiver]}))
    assert config.receivers[0].retry.timeout == 0.0


@pytest.mark.parametrize(
    ("ingest", "expected"),
    [
        # an unknown key
        ({"max_label_bytes": 10}, "ingest.max_label_bytes: unknown key"),
        # a bound of zero bytes would reject every series
        ({"max_label_value_bytes": 0}, "ingest.max_label_value_bytes: Input should be greater"),
        # a key larger than the ceiling would make checkpoints too large for a broker
        ({"max_series_key_bytes": 262_145}, "ingest.max_series_key_bytes: Input should be less"),
        # a part larger than the whole key could never be used
        (
            {"max_label_value_bytes": 5000},
            "max_label_value_bytes must not exceed max_series_key_bytes",
        ),
        # not a number
        ({"max_labels": "many"}, "ingest.max_labels: Input should be a valid integer"),
        # a log line cut shorter than this would lose its template
        ({"max_log_message_bytes": 10}, "ingest.max_log_message_bytes: Input should be greater"),
    ],
)
def test_bad_ingest_limits(tmp_path: Path, ingest: dict[str, object], expected: str) -> None:
    path = _write(tmp_path, {**MINIMAL, "ingest": ingest})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert expected in str(caught.value)


def test_ingest_limits_reach_the_decoder(tmp_path: Path) -> None:
    path = _write(tmp_path, {**MINIMAL, "ingest": {"max_labels": 2, "max_name_bytes": 100}})
    limits = load_config(path).ingest.limits
    assert (limits.max_labels, limits.max_name_bytes) == (2, 100)
    assert limits.max_series_key_bytes == 4096  # the default where not set
