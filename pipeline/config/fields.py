"""Field types the config schema shares: durations, RE2 patterns, secret sources."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    model_validator,
)

from pipeline.timeutil import parse_duration
from pipeline.userregex import check_user_regex

Duration = Annotated[float, BeforeValidator(parse_duration)]


# A user's pattern is matched with RE2 (pipeline.userregex): linear time whatever the pattern,
# Go's syntax as in Prometheus; one RE2 refuses (a backreference, a lookaround) fails the load.
Regex = Annotated[str, AfterValidator(check_user_regex)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretSource(_Strict):
    """Where a secret comes from: an environment variable or a file, never the YAML itself."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self) -> SecretStr:
        """Read the secret now; the value is wrapped so it never prints."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ValueError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(self.file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ValueError(f"cannot read secret file {self.file}: {exc.strerror}") from exc
