"""Log line masking before mining, and secret redaction of lines shown in a page."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from drain3.masking import AbstractMaskingInstruction  # type: ignore[import-untyped]

from pipeline.userregex import UserRegex

EXAMPLE_CHARS: Final = 300

#: Variables masked in every line before mining, in priority order: (mask name, pattern).
DEFAULT_MASKS: Final[tuple[tuple[str, str], ...]] = (
    ("UUID", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ("BLK", r"\bblk_-?\d+"),
    (
        "IP",
        r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"
        r"(?:,(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?)*(?![\w.])",
    ),
    ("NUM", r"(?<![\w.])0[xX][0-9a-fA-F]+(?![\w.])"),
    ("NUM", r"(?<![\w.-])(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{6,}(?![\w-])"),
    ("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:ms|us|ns|s|m|h|[KMGT]?B)?(?![\w.])"),
)

# Values that look like credentials are masked in example lines before they leave the stage.
_SECRET_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:(?:bearer|basic)\s+)?\S+"), r"\1<REDACTED>"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 <REDACTED>"),
    (
        re.compile(
            r"(?i)\b((?:[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
            r"access[_-]?key|private[_-]?key|credential|auth)[\w-]*)\s*[=:]\s*)"
            r"(?!<REDACTED>)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
        ),
        r"\1<REDACTED>",
    ),
    # The look-behind starts a scheme only where one can begin: without it every letter of a
    # long run was a start, each scanning the rest of the run (quadratic in the line).
    (
        re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"),
        r"\1<REDACTED>@",
    ),
    (re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]+"), "<REDACTED>"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "<REDACTED>"),
    (
        re.compile(r"\b(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Za-z])[A-Za-z0-9+/_-]{32,}=*"),
        "<REDACTED>",
    ),
)


#: How much of a line `redact_secrets` reads: what it shows, and as much again.
_REDACT_SPAN: Final = 2 * EXAMPLE_CHARS


def redact_secrets(line: str) -> str:
    """A log line fit to show in a page: credential-like values masked, length capped.

    >>> redact_secrets("login ok user=bob password=hunter2 token: abc.def")
    'login ok user=bob password=<REDACTED> token: <REDACTED>'
    >>> redact_secrets("GET https://admin:s3cret@db.internal/x Authorization: Bearer eyJabc.def")
    'GET https://<REDACTED>@db.internal/x Authorization: <REDACTED>'
    """
    # Only the start is shown, so only the start is searched: a line of a megabyte cost
    # minutes here. The margin keeps a secret that straddles the cut whole for its pattern.
    line = line[:_REDACT_SPAN]
    for pattern, replacement in _SECRET_PATTERNS:
        line = pattern.sub(replacement, line)
    if len(line) > EXAMPLE_CHARS:
        line = line[: EXAMPLE_CHARS - 1] + "…"
    return line


class CombinedMask(AbstractMaskingInstruction):  # type: ignore[misc]
    """Several masks applied in one regex pass (leftmost match, then the earlier mask wins)."""

    def __init__(self, masks: Iterable[tuple[str, str]]) -> None:
        masks = list(masks)
        super().__init__(masks[0][0] if masks else "")
        self.masks = masks
        self._names = {f"m{i}": name for i, (name, _) in enumerate(masks)}
        alternation = "|".join(f"(?P<m{i}>{pattern})" for i, (_, pattern) in enumerate(masks))
        self.regex = re.compile(alternation) if masks else None
        # Every default mask needs a digit: lines without one skip the regex entirely.
        self._needs_digit = re.compile(r"\d")

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        has_digit = self._needs_digit.search
        if self.regex is None or has_digit(content) is None:
            return content
        names = self._names

        def replace(match: re.Match[str]) -> str:
            return f"{mask_prefix}{names[match.lastgroup or '']}{mask_suffix}"

        # No mask spans whitespace, and Drain splits on it anyway: running the regex only
        # over the tokens that hold a digit is several times faster than over the line.
        sub = self.regex.sub
        tokens = content.split()
        for index, token in enumerate(tokens):
            if has_digit(token) is not None:
                tokens[index] = sub(replace, token)
        return " ".join(tokens)


class SiteMask(AbstractMaskingInstruction):  # type: ignore[misc]
    """A mask from `logs.masking`: the user's pattern runs on every line, so it runs on RE2
    (linear time whatever the pattern) instead of Drain3's `re`-based MaskingInstruction."""

    def __init__(self, pattern: str, mask_with: str) -> None:
        super().__init__(mask_with)
        self.regex = UserRegex(pattern)

    @property
    def pattern(self) -> str:
        """The user's pattern, as written."""
        return self.regex.pattern

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        return self.regex.sub(f"{mask_prefix}{self.mask_with}{mask_suffix}", content)
