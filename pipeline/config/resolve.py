"""Secrets read from the environment or files at start, checked before use."""

from __future__ import annotations

from pydantic import SecretStr

from pipeline.config.fields import SecretSource
from pipeline.config.schema import Config
from pipeline.errors import ConfigError


def _read_secret(secret: SecretSource, key: str, source: str) -> SecretStr:
    """A secret read now and checked: a missing, empty or padded one names its key."""
    try:
        value = secret.resolve()
    except ValueError as exc:
        raise ConfigError(f"{source}: {key}: {exc}") from None
    text = value.get_secret_value()
    if not text:
        raise ConfigError(f"{source}: {key}: the secret is empty")
    if text != text.strip():  # no receiver or header would match it as sent
        raise ConfigError(f"{source}: {key}: the secret starts or ends with white space")
    return value


def resolve_http_token(config: Config, source: str = "<config>") -> SecretStr | None:
    """Read the silences API's token now (None when the config sets none): a missing or empty
    secret fails at start, not at the first request."""
    if config.http.token is None:
        return None
    return _read_secret(config.http.token, "http.token", source)


def resolve_secrets(config: Config, source: str = "<config>") -> dict[str, SecretStr]:
    """Read every receiver's routing key now: a missing, empty or padded secret fails at
    start, not at page time (PagerDuty would refuse every page sent with it)."""
    return {
        receiver.name: _read_secret(receiver.routing_key, f"receivers.{index}.routing_key", source)
        for index, receiver in enumerate(config.receivers)
        if receiver.routing_key is not None
    }
