"""Regular expressions that users write (silences, API filters, config), matched with RE2.

Python's `re` backtracks: one pattern such as `(.*.*)*x` took the event loop that every stage
shares for minutes. RE2 matches in time linear in the text, whatever the pattern, and its
syntax is the one Alertmanager and Prometheus use (Go's regexp), so `[[:digit:]]+` means what
it means there. A pattern RE2 cannot compile (a backreference, a lookaround) is an error,
never a silent fall back to `re`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

#: RE2 writes every refused pattern to stderr unless told not to; the caller reports it.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


def _compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "refused"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(
            f"not a regular expression RE2 accepts ({reason}); RE2, the syntax of "
            "Alertmanager and Prometheus, has no backreferences or lookaround"
        ) from None


def _utf8(text: str) -> bytes:
    # surrogatepass: a label decoded with surrogateescape fails to match, not the stage.
    return text.encode("utf-8", "surrogatepass")


class UserRegex:
    """A user's pattern, compiled with RE2; `ValueError` (saying why) when RE2 refuses it."""

    __slots__ = ("_anchored", "_plain", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        # Compiled alone first, so that a value such as `a)|(b` cannot close the anchoring
        # group below and match unanchored (Go's Alertmanager, which concatenates, accepts it).
        try:
            self._plain = _compile(pattern)
        except ValueError as exc:
            raise ValueError(f"{pattern!r} is {exc}") from None
        # As Alertmanager builds a matcher's regex: `^(?:value)$`, without the `s` flag, so
        # `.` does not match a newline and `$` is the end of the text.
        self._anchored = _compile(f"^(?:{pattern})$")

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of `text` matches (Alertmanager's and Prometheus' anchoring).

        >>> UserRegex("[[:digit:]]+").fullmatch("042"), UserRegex("check").fullmatch("checkout")
        (True, False)
        """
        return self._anchored.search(_utf8(text)) is not None

    def search(self, text: str) -> bool:
        """Whether any part of `text` matches."""
        return self._plain.search(_utf8(text)) is not None

    def sub(self, replacement: str, text: str) -> str:
        """`text` with every match replaced by `replacement`, taken literally (no `\\1`).

        >>> UserRegex(r"\\d+").sub("<N>", "took 35 ms, 2 tries")
        'took <N> ms, <N> tries'
        """
        literal: Callable[[Any], str] = lambda _match: replacement  # noqa: E731
        return str(self._plain.sub(literal, text))

    def __repr__(self) -> str:
        return f"UserRegex({self.pattern!r})"


def check_user_regex(pattern: str) -> str:
    """`pattern` unchanged when RE2 compiles it (a pydantic validator); else ValueError."""
    _compile(pattern)
    return pattern
