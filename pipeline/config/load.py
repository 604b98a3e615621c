"""Reading the YAML file strictly (no repeated key, UTF-8 only) and reporting errors by key path.

Every problem is reported as `<file>: <key.path>: <what is wrong> (got <value>)`.
"""

from __future__ import annotations

import io
import reprlib
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config.schema import Config
from pipeline.errors import ConfigError


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<top>"


def _value_at(data: Any, loc: tuple[int | str, ...]) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return node


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed YAML document; errors name `source`, the key path and value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: <top>: expected a mapping (got {type(data).__name__})")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            if loc and loc[-1] == "[key]":  # a mapping's key is bad: show the key itself
                loc = loc[:-1]
                value: Any = loc[-1]
            else:
                value = _value_at(data, loc)
            shown = (
                "<secret>" if any("password" in str(p) or str(p) == "key" for p in loc) else value
            )
            got = f" (got {_shown(shown)})" if loc else ""  # not the whole file again
            lines.append(f"{source}: {_location(loc)}: {message}{got}")
        raise ConfigError("\n".join(lines)) from None


#: How much of a bad value an error message quotes.
_SHOWN_CHARS = 200
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring = 3, 8, 8, _SHOWN_CHARS


def _shown(value: Any) -> str:
    """`repr(value)`, cut short: YAML aliases can expand a small file into megabytes."""
    text = _REPR.repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last
    silently, so a second `correlate:` section would drop the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        stream = io.StringIO(text)
        stream.name = str(path)  # so YAML's marks name the file, not "<unicode string>"
        data = yaml.load(stream, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, str(path))
