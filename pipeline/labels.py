"""Label names, and Alertmanager's label matchers: what config and correlate share.

A leaf module (it imports neither `pipeline.config` nor `pipeline.correlate`), so the config
can check a silence's matchers and the correlator can apply them without an import cycle.
Matchers follow Alertmanager: `=`, `!=`, `=~`, `!~`; regular expressions are RE2
(pipeline.userregex: Go's syntax, linear time), fully anchored, and a label an alert does not
carry matches as the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from pipeline.silence_limits import MAX_MATCHER_TEXT_CHARS, MAX_NAME_CHARS, MAX_VALUE_CHARS
from pipeline.userregex import UserRegex

__all__ = ["LABEL_NAME", "MATCH_OPS", "MatchOp", "Matcher", "is_label_name", "parse_matcher"]

MatchOp = Literal["=", "!=", "=~", "!~"]
MATCH_OPS: tuple[MatchOp, ...] = ("=", "!=", "=~", "!~")

# Only the name and the operator are read with a regex, and it cannot backtrack (each part's
# characters differ from the next part's): the value is the rest, stripped, so parsing is
# linear. (`(.*?)\s*$` over the whole text took 42 s for a matcher with 100,000 spaces.)
# The two-character operators come first so `=~` is never read as `=` plus a value `~...`.
_MATCHER_HEAD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)")
#: A label name as Prometheus and Alertmanager spell one.
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_label_name(name: str) -> bool:
    """Whether `name` is a valid label name (letters, digits and _, not starting with a digit).

    >>> is_label_name("service"), is_label_name("2xx")
    (True, False)
    """
    return LABEL_NAME.fullmatch(name) is not None


_FORM_HINT = "expected <label><op><value> with op one of =, !=, =~, !~ (e.g. service=checkout)"


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label condition of a silence, with Alertmanager's semantics."""

    name: str
    op: MatchOp
    value: str
    _pattern: UserRegex | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if len(self.name) > MAX_NAME_CHARS:
            raise ValueError(f"label name longer than {MAX_NAME_CHARS} characters")
        if not is_label_name(self.name):
            raise ValueError(f"bad label name {self.name!r}: use letters, digits and _")
        if self.op not in MATCH_OPS:
            raise ValueError(f"bad matcher operator {self.op!r}; use one of {', '.join(MATCH_OPS)}")
        if len(self.value) > MAX_VALUE_CHARS:
            raise ValueError(f"value longer than {MAX_VALUE_CHARS} characters")
        if self.op in ("=~", "!~"):
            # RE2, not `re`: it matches in linear time whatever the pattern (see userregex).
            object.__setattr__(self, "_pattern", UserRegex(self.value))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy this condition; a missing label reads as ``""``.

        >>> Matcher("service", "=~", "check.*").matches({"service": "checkout"})
        True
        >>> Matcher("service", "=~", "check").matches({"service": "checkout"})
        False
        """
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._pattern is not None
        # fullmatch: Alertmanager anchors every regex at both ends.
        found = self._pattern.fullmatch(actual)
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def _unquote(raw: str, text: str) -> str:
    """The value of a matcher: double quotes stripped, with `\\"` and `\\\\` unescaped."""
    if not raw.startswith('"'):
        return raw
    if len(raw) < 2 or not raw.endswith('"'):
        raise ValueError(f"bad matcher {text!r}: unterminated quoted value")
    inner = raw[1:-1]
    out: list[str] = []
    index = 0
    while index < len(inner):
        char = inner[index]
        if char == "\\" and index + 1 < len(inner) and inner[index + 1] in ('"', "\\"):
            out.append(inner[index + 1])
            index += 2
            continue
        if char == '"':
            raise ValueError(f"bad matcher {text!r}: unescaped quote inside the quoted value")
        # Other backslashes stay as written, so `=~"http_\d+"` means the regex users expect.
        out.append(char)
        index += 1
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """A `Matcher` from text such as `service=checkout`, `name=~"http_.*"` or `env!~dev|test`.

    Raises ValueError naming the text when it is not a matcher or its regex does not compile.

    >>> parse_matcher('name=~"http_.*"')
    Matcher(name='name', op='=~', value='http_.*')
    """
    if len(text) > MAX_MATCHER_TEXT_CHARS:
        raise ValueError(
            f"bad matcher {text[:40]!r}...: longer than {MAX_MATCHER_TEXT_CHARS} characters"
        )
    head = _MATCHER_HEAD.match(text)
    if head is None:
        raise ValueError(f"bad matcher {text!r}: {_FORM_HINT}")
    name, op = head.groups()
    value = _unquote(text[head.end() :].strip(), text)
    try:
        return Matcher(name, cast(MatchOp, op), value)
    except ValueError as exc:
        raise ValueError(f"bad matcher {text!r}: {exc}") from None
