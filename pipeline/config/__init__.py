"""The one YAML configuration file: strict schema, semantic checks, secrets from env or files.

Every problem is reported as `<file>: <key.path>: <what is wrong> (got <value>)`.
"""

from pipeline.config.fields import Duration, Regex, SecretSource
from pipeline.config.load import load_config, parse_config
from pipeline.config.resolve import resolve_http_token, resolve_secrets
from pipeline.config.schema import Config
from pipeline.config.sections import (
    DEFAULT_MAX_LEAD,
    DEFAULT_MAX_SKEW,
    SERIES_KEY_CEILING,
    CorrelateConfig,
    DetectConfig,
    HttpConfig,
    IngestConfig,
    KafkaConfig,
    KafkaSecurity,
    LogLevel,
    LogMaskRule,
    LogsConfig,
    Receiver,
    RetryConfig,
    RouteConfig,
    SignalRule,
    Silence,
    StageName,
    TopicsConfig,
    WorkerConfig,
)

__all__ = [
    "DEFAULT_MAX_LEAD",
    "DEFAULT_MAX_SKEW",
    "SERIES_KEY_CEILING",
    "Config",
    "CorrelateConfig",
    "DetectConfig",
    "Duration",
    "HttpConfig",
    "IngestConfig",
    "KafkaConfig",
    "KafkaSecurity",
    "LogLevel",
    "LogMaskRule",
    "LogsConfig",
    "Receiver",
    "Regex",
    "RetryConfig",
    "RouteConfig",
    "SecretSource",
    "SignalRule",
    "Silence",
    "StageName",
    "TopicsConfig",
    "WorkerConfig",
    "load_config",
    "parse_config",
    "resolve_http_token",
    "resolve_secrets",
]
