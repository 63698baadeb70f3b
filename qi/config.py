"""Typed configuration, read from the environment at the edge (never at import).

One prefix per component: ``QI_KAFKA_*``, ``QI_SCHEMA_REGISTRY_*``,
``QI_POSTGRES_*``, ``QI_CLICKHOUSE_*``, ``QI_REDIS_*``, ``QI_MQTT_*``,
``QI_STACK_*``, ``QI_LOG_*``. A URL left unset means "use the local stack".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _cfg(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore")


class KafkaSettings(BaseSettings):
    model_config = _cfg("QI_KAFKA_")

    bootstrap: str | None = Field(None, description="host:port[,host:port]; unset: the local stack's broker")
    topic_prefix: str = Field("", description="prepended to every topic name, e.g. 'staging.'")
    partitions: int = Field(3, ge=1, description="partitions of each topic created by QI Stream")
    partitions_per_family: dict[str, int] = Field(
        default_factory=lambda: {"readings": 6, "scores": 6},
        description="overrides of `partitions` per topic family (JSON in the environment)",
    )
    replication_factor: int = Field(1, ge=1)
    client_id: str = "qi"

    def partitions_for(self, family: str) -> int:
        return self.partitions_per_family.get(family, self.partitions)


class SchemaRegistrySettings(BaseSettings):
    model_config = _cfg("QI_SCHEMA_REGISTRY_")

    url: str | None = Field(None, description="Confluent-compatible registry; unset: built-in registry")
    username: str | None = None
    password: SecretStr | None = None


class PostgresSettings(BaseSettings):
    model_config = _cfg("QI_POSTGRES_")

    dsn: SecretStr | None = None


class ClickHouseSettings(BaseSettings):
    model_config = _cfg("QI_CLICKHOUSE_")

    dsn: SecretStr | None = Field(None, description="http(s)://... for a server, chdb:///dir for in-process")


class RedisSettings(BaseSettings):
    model_config = _cfg("QI_REDIS_")

    url: SecretStr | None = None


class MqttSettings(BaseSettings):
    model_config = _cfg("QI_MQTT_")

    url: SecretStr | None = Field(None, description="mqtt://[user:pass@]host:port")


class StackSettings(BaseSettings):
    model_config = _cfg("QI_STACK_")

    run_dir: Path = Field(Path(".qi"), description="where the local stack keeps data, logs and state")
    mqtt_broker: Literal["auto", "mosquitto", "amqtt"] = "auto"
    start_timeout_s: float = 60.0
    log_storage: Literal["durable", "memory"] = Field(
        "durable", description="durable: the broker's log in a local object store, kept by `qi stack down`; "
        "memory: gone when the broker stops (fast, for tests)",
    )


class RunnerSettings(BaseSettings):
    """The batch runner of every high-volume worker (``QI_RUNNER_*``)."""

    model_config = _cfg("QI_RUNNER_")

    max_batch: int = Field(5000, ge=1, description="most records handed to a processor per fetch")
    poll_timeout_ms: int = Field(200, ge=1, description="how long one fetch waits for records")
    session_timeout_ms: int = Field(10_000, ge=1000, description="a dead member is replaced after this")
    heartbeat_interval_ms: int = Field(1_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    max_partition_fetch_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    fetch_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    retry_initial_s: float = Field(0.2, gt=0, description="first backoff after a transient failure")
    retry_max_s: float = Field(5.0, gt=0, description="longest backoff between retries")
    report_every_s: float = Field(10.0, gt=0, description="how often counters are logged")


class LogSettings(BaseSettings):
    model_config = _cfg("QI_LOG_")

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(BaseModel):
    """Everything, composed. Build it with :meth:`from_env` at the program's edge."""

    kafka: KafkaSettings
    schema_registry: SchemaRegistrySettings
    postgres: PostgresSettings
    clickhouse: ClickHouseSettings
    redis: RedisSettings
    mqtt: MqttSettings
    stack: StackSettings
    log: LogSettings
    runner: RunnerSettings = Field(default_factory=RunnerSettings)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            kafka=KafkaSettings(),
            schema_registry=SchemaRegistrySettings(),
            postgres=PostgresSettings(),
            clickhouse=ClickHouseSettings(),
            redis=RedisSettings(),
            mqtt=MqttSettings(),
            stack=StackSettings(),
            log=LogSettings(),
            runner=RunnerSettings(),
        )
