"""Silences: matcher parsing, Alertmanager matching semantics, and window edges."""

from __future__ import annotations

import pytest

from pipeline.config import Silence
from pipeline.correlate.silence import Matcher, Silencer, SilenceRule, anomaly_labels, parse_matcher
from pipeline.model import Anomaly, SeriesKey, Signal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the DESIGN.md example
        ("service=merchant-portal", Matcher("service", "=", "merchant-portal")),
        # negative equality
        ("service!=x", Matcher("service", "!=", "x")),
        # quoted regex value loses its quotes
        ('name=~"http_.*"', Matcher("name", "=~", "http_.*")),
        # unquoted negative regex
        ("x!~y", Matcher("x", "!~", "y")),
        # spaces around the operator and the value are ignored
        ("  env  =  prod  ", Matcher("env", "=", "prod")),
        # an empty value is allowed: it matches a missing label
        ("region=", Matcher("region", "=", "")),
        # a quoted empty value is the same
        ('region=""', Matcher("region", "=", "")),
        # an escaped quote and an escaped backslash inside quotes are unescaped
        ('msg="say \\"hi\\" \\\\ bye"', Matcher("msg", "=", 'say "hi" \\ bye')),
        # other backslashes stay, so regex escapes read as written
        ('name=~"http_\\d+"', Matcher("name", "=~", "http_\\d+")),
        # a value may contain operator characters
        ("q=a=b", Matcher("q", "=", "a=b")),
        # the double-underscore metric name label
        ("__name__=~up|down", Matcher("__name__", "=~", "up|down")),
    ],
)
def test_parse_matcher_accepts(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # nothing at all
        ("", "expected <label><op><value>"),
        # no operator
        ("service", "expected <label><op><value>"),
        # no label name
        ("=checkout", "expected <label><op><value>"),
        # a label name cannot start with a digit
        ("1service=x", "expected <label><op><value>"),
        # an unknown operator
        ("service~=x", "expected <label><op><value>"),
        # a regex that does not compile
        ("service=~(", "is not a regular expression"),
        # the same for a negative regex
        ('service!~"[a-"', "is not a regular expression"),
        # an opening quote without a closing one
        ('service="checkout', "unterminated quoted value"),
        # a bare quote inside a quoted value
        ('service="a"b"', "unescaped quote"),
    ],
)
def test_parse_matcher_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="bad matcher") as info:
        parse_matcher(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


def test_matcher_rejects_unknown_operator_when_built_directly() -> None:
    with pytest.raises(ValueError, match="bad matcher operator"):
        Matcher("service", "==", "x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        # equality on a present label
        ("service=checkout", {"service": "checkout"}, True),
        # equality is exact, not a prefix
        ("service=check", {"service": "checkout"}, False),
        # a missing label is the empty string, so it does not equal a value
        ("service=checkout", {}, False),
        # ... and it does equal the empty value
        ('service=""', {}, True),
        # != on a different value
        ("service!=checkout", {"service": "payments"}, True),
        # != on the same value
        ("service!=checkout", {"service": "checkout"}, False),
        # != on a missing label: "" differs from the value
        ("service!=checkout", {}, True),
        # regex is anchored at the start: a suffix match is not enough
        ("service=~out", {"service": "checkout"}, False),
        # regex is anchored at the end: a prefix match is not enough
        ("service=~check", {"service": "checkout"}, False),
        # a full regex match
        ("service=~check.*", {"service": "checkout"}, True),
        # alternation is anchored as a whole, not just its first branch
        ("service=~a|checkout", {"service": "checkout"}, True),
        # anchoring applies to every branch: "xa" matches neither branch in full
        ("service=~a|b", {"service": "xa"}, False),
        # a regex that matches the empty string matches a missing label
        ("service=~.*", {}, True),
        # a regex needing characters does not match a missing label
        ("service=~.+", {}, False),
        # !~ is the negation of =~
        ("service!~check.*", {"service": "checkout"}, False),
        # !~ with an anchored miss
        ("service!~check", {"service": "checkout"}, True),
        # !~ on a missing label with a regex that needs characters
        ("service!~.+", {}, True),
        # a trailing newline is not swallowed by the anchor
        ("service=~checkout", {"service": "checkout\n"}, False),
    ],
)
def test_matcher_semantics(matcher: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(matcher).matches(labels) is expected


def _rule(*matchers: str, starts_at: float = 100.0, ends_at: float = 200.0) -> SilenceRule:
    return SilenceRule(tuple(parse_matcher(m) for m in matchers), starts_at, ends_at, "why", "s1")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # before the window
        (99.999, False),
        # the start is inside (closed)
        (100.0, True),
        # the middle
        (150.0, True),
        # just before the end
        (199.999, True),
        # the end is outside (half-open): alerts page again from ends_at
        (200.0, False),
        # after the window
        (250.0, False),
    ],
)
def test_silence_window_edges(now: float, expected: bool) -> None:
    rule = _rule("service=checkout")
    assert rule.active(now) is expected
    assert rule.mutes({"service": "checkout"}, now) is expected


@pytest.mark.parametrize(
    ("matchers", "labels", "expected"),
    [
        # every matcher must match
        (("service=checkout", "region=eu"), {"service": "checkout", "region": "eu"}, True),
        # one miss is enough to not mute
        (("service=checkout", "region=eu"), {"service": "checkout", "region": "us"}, False),
        # a negative matcher combined with a positive one
        (("service=~check.*", "env!=prod"), {"service": "checkout", "env": "dev"}, True),
    ],
)
def test_silence_needs_all_matchers(
    matchers: tuple[str, ...], labels: dict[str, str], expected: bool
) -> None:
    assert _rule(*matchers).mutes(labels, 150.0) is expected


@pytest.mark.parametrize(
    ("matchers", "starts_at", "ends_at", "message"),
    [
        # no matcher would silence everything
        ((), 0.0, 1.0, "at least one matcher"),
        # an empty window
        (("a=b",), 5.0, 5.0, "after its starts_at"),
        # a reversed window
        (("a=b",), 5.0, 1.0, "after its starts_at"),
    ],
)
def test_silence_rule_rejects(
    matchers: tuple[str, ...], starts_at: float, ends_at: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SilenceRule(tuple(parse_matcher(m) for m in matchers), starts_at, ends_at)


def test_silencer_returns_first_matching_active_rule() -> None:
    expired = SilenceRule((parse_matcher("service=checkout"),), 0.0, 10.0, "old", "a")
    broad = SilenceRule((parse_matcher("service=~.+"),), 0.0, 1000.0, "broad", "b")
    narrow = SilenceRule((parse_matcher("service=checkout"),), 0.0, 1000.0, "narrow", "c")
    silencer = Silencer([expired, broad, narrow])
    assert silencer.mutes({"service": "checkout"}, 50.0) is broad
    assert silencer.mutes({"service": "checkout"}, 5.0) is expired
    assert Silencer([narrow]).mutes({"service": "payments"}, 50.0) is None
    assert Silencer().mutes({"service": "checkout"}, 50.0) is None


def test_silencer_from_config() -> None:
    silences = [
        Silence(
            matchers=["service=merchant-portal", 'signal=~"latency|errors"'],
            starts_at="2026-01-01T19:12:00Z",  # type: ignore[arg-type]
            ends_at="2026-01-01T19:42:00Z",  # type: ignore[arg-type]
            comment="planned database maintenance",
        ),
        Silence(matchers=["env=dev"], starts_at=0.0, ends_at=1.0),
    ]
    silencer = Silencer.from_config(silences)
    assert [r.id for r in silencer.rules] == ["silence-0", "silence-1"]
    first = silencer.rules[0]
    assert first.matchers == (
        Matcher("service", "=", "merchant-portal"),
        Matcher("signal", "=~", "latency|errors"),
    )
    assert (first.starts_at, first.ends_at) == (1767294720.0, 1767296520.0)
    labels = {"service": "merchant-portal", "signal": "errors"}
    assert silencer.mutes(labels, 1767294720.0) is first
    assert silencer.mutes(labels, 1767296520.0) is None
    assert silencer.mutes(labels | {"signal": "traffic"}, 1767295000.0) is None


def test_anomaly_labels() -> None:
    series = SeriesKey.of("http_errors_total", {"service": "from-label", "region": "eu"})
    anomaly = Anomaly(1.0, series, "checkout", Signal.ERRORS, 5.0, 1.0, 0.999, 0.99)
    assert anomaly_labels(anomaly) == {
        "__name__": "http_errors_total",
        "name": "http_errors_total",
        "region": "eu",
        # the anomaly's own service and signal win over same-named series labels
        "service": "checkout",
        "signal": "errors",
    }
    named = Anomaly(1.0, SeriesKey.of("up", {"name": "job-a"}), "s", Signal.GENERIC, 0, 1, 1, 0.9)
    # a series label called `name` keeps its value; `__name__` is still the metric name
    assert anomaly_labels(named)["name"] == "job-a"
    assert anomaly_labels(named)["__name__"] == "up"
