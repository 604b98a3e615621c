"""Client options follow the config, secrets stay out of logs, topic creation gives up in time."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from pipeline.broker import free_port
from pipeline.config import KafkaConfig
from pipeline.errors import BrokerError, ConfigError
from pipeline.kafka import client_options, ensure_topics, redacted


def _kafka(**security: Any) -> KafkaConfig:
    return KafkaConfig.model_validate(
        {"bootstrap_servers": "kafka:9092", "client_id": "qp-test", "security": security}
    )


def test_plaintext_options_carry_only_address_and_identity() -> None:
    assert client_options(_kafka()) == {
        "bootstrap_servers": "kafka:9092",
        "client_id": "qp-test",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_password_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QP_TEST_SASL", "hunter2")
    options = client_options(
        _kafka(
            protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="quietpager",
            sasl_password={"env": "QP_TEST_SASL"},
        )
    )

    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "quietpager"
    assert options["sasl_plain_password"] == "hunter2"
    assert "hunter2" not in repr(redacted(options))
    assert redacted(options)["sasl_plain_password"] == "<secret>"


def test_sasl_ssl_builds_a_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QP_TEST_SASL", "hunter2")
    options = client_options(
        _kafka(
            protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="quietpager",
            sasl_password={"env": "QP_TEST_SASL"},
        )
    )

    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert redacted(options)["ssl_context"] == "<tls>"


@pytest.mark.parametrize(
    ("security", "message"),
    [
        # SASL without a mechanism cannot authenticate.
        (
            {"protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": {"env": "QP_SET"}},
            "sasl_mechanism: required",
        ),
        # SASL without credentials cannot authenticate.
        ({"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "sasl_username and"),
        # The password's variable is not set: fail at start, naming the variable.
        (
            {
                "protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": {"env": "QP_UNSET_FOR_TEST"},
            },
            "QP_UNSET_FOR_TEST is not set",
        ),
        # A CA file that does not exist.
        ({"protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "cannot load TLS files"),
    ],
)
def test_incomplete_security_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, security: dict[str, Any], message: str
) -> None:
    monkeypatch.setenv("QP_SET", "x")
    monkeypatch.delenv("QP_UNSET_FOR_TEST", raising=False)
    with pytest.raises(ConfigError, match=message):
        client_options(_kafka(**security))


async def test_ensure_topics_rejects_compacted_names_it_was_not_asked_to_create() -> None:
    with pytest.raises(ValueError, match=r"quietpager\.state\.detect"):
        await ensure_topics("127.0.0.1:9", {"a": 1}, compacted={"quietpager.state.detect"})


async def test_ensure_topics_backs_off_then_gives_up_when_nothing_listens() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def clock() -> float:
        return sum(slept)

    with pytest.raises(BrokerError, match="cannot create topics"):
        await ensure_topics(
            f"127.0.0.1:{free_port()}", {"a": 1}, give_up_after=1.0, sleep=sleep, clock=clock
        )
    # Doubling from 50 ms; the next wait (0.8 s) would pass the 1 s budget, so it gives up.
    assert slept == [0.05, 0.1, 0.2, 0.4]
