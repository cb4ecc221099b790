"""Where the event pipeline connects: the broker, its security, the topics.

``KafkaSettings`` is plain data (no driver); the factory and the worker
build it from ``Settings`` and the ``kafka`` section of the ``config`` dict
(explicit config beats the environment), and ``adapters/kafka`` turns it
into librdkafka configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from ..settings import Settings

__all__ = ["DLQ_SUFFIX", "TOPIC", "KafkaSettings"]

TOPIC = "memory.events"
DLQ_SUFFIX = ".dlq"
_KEYS = (
    "bootstrap_servers",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_ca_location",
    "topic",
    "partitions",
    "session_timeout_ms",
)


@dataclass(frozen=True)
class KafkaSettings:
    """Broker address, TLS/SASL, topic names and consumer timing."""

    bootstrap_servers: str
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    topic: str = TOPIC
    partitions: int = 6
    session_timeout_ms: int = 10_000

    @property
    def dlq_topic(self) -> str:
        return self.topic + DLQ_SUFFIX

    @classmethod
    def resolve(cls, config: dict[str, Any] | None, settings: Settings) -> KafkaSettings | None:
        """From the ``kafka`` config section over the environment; ``None``
        when no broker is configured anywhere."""
        section = dict(config or {})
        unknown = set(section) - set(_KEYS)
        if unknown:
            raise ConfigurationError(f"config.kafka: unknown keys {sorted(unknown)}; known: {list(_KEYS)}")
        s = settings
        servers = section.get("bootstrap_servers") or s.kafka_bootstrap_servers
        if not servers:
            return None
        return cls(
            bootstrap_servers=str(servers),
            security_protocol=section.get("security_protocol") or s.kafka_security_protocol,
            sasl_mechanism=section.get("sasl_mechanism") or s.kafka_sasl_mechanism,
            sasl_username=section.get("sasl_username") or s.kafka_sasl_username,
            sasl_password=section.get("sasl_password") or s.kafka_sasl_password,
            ssl_ca_location=section.get("ssl_ca_location") or s.kafka_ssl_ca_location,
            topic=str(section.get("topic") or s.kafka_topic),
            partitions=int(section.get("partitions") or s.kafka_topic_partitions),
            session_timeout_ms=int(section.get("session_timeout_ms") or s.kafka_session_timeout_ms),
        )

    def client_config(self) -> dict[str, Any]:
        """The librdkafka settings every client shares (address and security)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    def __repr__(self) -> str:  # never print the password
        hidden = "***" if self.sasl_password else None
        return (
            f"KafkaSettings(bootstrap_servers={self.bootstrap_servers!r}, "
            f"security_protocol={self.security_protocol!r}, sasl_mechanism={self.sasl_mechanism!r}, "
            f"sasl_username={self.sasl_username!r}, sasl_password={hidden!r}, topic={self.topic!r})"
        )
