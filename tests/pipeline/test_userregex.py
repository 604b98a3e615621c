"""Users' regular expressions: RE2, anchored as Alertmanager anchors a matcher's regex.

The verdicts below are Alertmanager's (pkg/labels.Matcher compiles `^(?:value)$` with Go's
regexp, whose syntax is RE2's); where this project parts from it, the case says so.
"""

from __future__ import annotations

import time

import pytest

from pipeline.correlate.silence import Matcher
from pipeline.userregex import UserRegex, check_user_regex


@pytest.mark.parametrize(
    ("pattern", "value", "alertmanager"),
    [
        # a prefix and a wildcard
        ("check.*", "checkout", True),
        # anchored at the start and at the end: no substring match
        ("check", "checkout", False),
        ("out", "checkout", False),
        # an alternation is anchored as a whole, not its first and last branches
        ("a|b", "ab", False),
        ("a|b", "b", True),
        # POSIX classes are RE2 syntax (Python's re warned and never matched)
        ("[[:digit:]]+", "042", True),
        ("[[:digit:]]+", "4a", False),
        ("[[:alpha:]_]+", "db_main", True),
        # \d and \w are ASCII in RE2 (Python's re: any Unicode digit or letter)
        (r"\d+", "٣", False),
        (r"\w+", "é", False),
        # Unicode classes, and `.` is one character, not one byte
        (r"\pL+", "éa", True),
        ("a.c", "aéc", True),
        ("[^a]", "é", True),
        # no `s` flag: `.` does not cross a newline unless asked
        (".*", "a\nb", False),
        ("(?s).*", "a\nb", True),
        # `$` is the end of the text, not before a final newline
        ("a$", "a\n", False),
        # flags inside the pattern
        ("(?i)CHECKOUT", "checkout", True),
        # the empty pattern matches only the empty value; a missing label reads as ""
        ("", "", True),
        ("", "x", False),
        ("x*", "", True),
        # catastrophic for a backtracking engine, a plain no for RE2
        ("(.*.*)*x", "a" * 64, False),
        ("(x+x+)+y", "x" * 64, False),
        ("(.*.*)*x", "a" * 64 + "x", True),
    ],
)
def test_matches_as_alertmanager(pattern: str, value: str, alertmanager: bool) -> None:
    assert UserRegex(pattern).fullmatch(value) is alertmanager
    # The same verdict through a silence matcher, and its negation for `!~`.
    assert Matcher("l", "=~", pattern).matches({"l": value}) is alertmanager
    assert Matcher("l", "!~", pattern).matches({"l": value}) is not alertmanager


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        # a backreference (Python's re accepts it: no silent fall back to re)
        (r"(a)\1", "invalid escape sequence"),
        # lookahead and lookbehind, positive and negative
        ("(?=a)a", "invalid perl operator"),
        ("(?!a)b", "invalid perl operator"),
        ("(?<=a)b", "invalid perl operator"),
        ("(?<!a)b", "invalid perl operator"),
        # Python's end-of-text escape; RE2 (and Go) spell it \z
        (r"a\Z", "invalid escape sequence"),
        # a repeat count over 1000, refused by Go's regexp too
        ("a{1001}", "invalid repetition size"),
        # a nested repetition, refused by Go's regexp too
        ("x**", "bad repetition operator"),
        # unbalanced parentheses
        ("(", "missing )"),
        # Alertmanager concatenates `^(?:` + value + `)$`, so it accepts this and matches it
        # unanchored; here the value must compile alone, and this one does not
        ("a)|(b", "unexpected )"),
    ],
)
def test_refused_with_a_reason(
    pattern: str, reason: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="not a regular expression RE2 accepts") as caught:
        UserRegex(pattern)
    assert reason in str(caught.value)
    with pytest.raises(ValueError, match="backreferences or lookaround"):
        check_user_regex(pattern)
    # RE2 logs every refused pattern to stderr unless told not to; the caller reports it.
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        # the silence that wedged every worker, against a long metric name
        ("(.*.*)*x", "http_request_duration_seconds_bucket" * 25),
        # the filter that did the same to the API
        ("(x+x+)+y", "x" * 1000),
        # nested groups and alternations
        ("((a|aa)+)+b", "a" * 1000),
    ],
)
def test_catastrophic_patterns_match_in_microseconds(pattern: str, value: str) -> None:
    regex = UserRegex(pattern)
    regex.fullmatch(value)  # the first match builds RE2's DFA
    began = time.perf_counter()
    for _ in range(100):
        assert not regex.fullmatch(value)
    per_match = (time.perf_counter() - began) / 100
    # Python's re took longer than the age of the universe on these; RE2 takes microseconds
    # (a millisecond leaves room for a loaded machine).
    assert per_match < 1e-3


def test_search_and_sub_are_unanchored_and_literal() -> None:
    regex = UserRegex(r"core\.\d+")
    assert regex.search("on core.12 at 3")
    assert not regex.fullmatch("on core.12 at 3")
    # The replacement is taken as written: a `\1` in a mask name is no group reference.
    assert UserRegex(r"(\d+)").sub(r"<\1>", "a 12 b") == r"a <\1> b"


def test_lone_surrogates_fail_to_match_instead_of_raising() -> None:
    # A label decoded with surrogateescape carries lone surrogates; they must not crash a stage.
    assert not UserRegex("ab").fullmatch("a\udcff")
    assert Matcher("l", "!~", "ab").matches({"l": "a\udcff"})


def test_doctests() -> None:
    import doctest

    import pipeline.correlate.silence
    import pipeline.silences
    import pipeline.userregex

    for module in (pipeline.userregex, pipeline.correlate.silence, pipeline.silences):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0
