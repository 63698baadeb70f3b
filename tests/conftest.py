"""Shared fixtures. The real local stack starts once per test session."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.schemas import SchemaCatalog
from qi.config import (
    ClickHouseSettings,
    KafkaSettings,
    LogSettings,
    MqttSettings,
    PostgresSettings,
    RedisSettings,
    SchemaRegistrySettings,
    Settings,
    StackSettings,
)
from qi.platform import Platform
from qi.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """Broker, Postgres, Redis and MQTT broker as real processes; chDB directory for ClickHouse."""
    run_dir = ROOT / ".qi" / f"test-session-{os.getpid()}"
    stack = LocalStack(run_dir, start_timeout_s=90, log_storage="memory")  # durability: tests/qi/test_durable_log.py
    try:
        stack.up()
        yield stack
    finally:
        stack.down(purge=True)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_env(local_stack: LocalStack) -> dict[str, str]:
    """Environment for `qi` subprocesses: every endpoint explicit, pointing at the session stack."""
    urls = local_stack.urls()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
    env.update({
        "QI_KAFKA_BOOTSTRAP": urls["kafka"],
        "QI_POSTGRES_DSN": urls["postgres"],
        "QI_REDIS_URL": urls["redis"],
        "QI_MQTT_URL": urls["mqtt"],
        "QI_CLICKHOUSE_DSN": urls["clickhouse"],
        "QI_STACK_RUN_DIR": str(local_stack.run_dir),
        "QI_LOG_FORMAT": "json",
    })
    return env


def make_settings(local_stack: LocalStack, prefix: str = "") -> Settings:
    urls = local_stack.urls()
    return Settings(
        kafka=KafkaSettings(bootstrap=urls["kafka"], topic_prefix=prefix, partitions=3),
        schema_registry=SchemaRegistrySettings(url=None),
        postgres=PostgresSettings(dsn=urls["postgres"]),
        clickhouse=ClickHouseSettings(dsn=urls["clickhouse"]),
        redis=RedisSettings(url=urls["redis"]),
        mqtt=MqttSettings(url=urls["mqtt"]),
        stack=StackSettings(run_dir=local_stack.run_dir),
        log=LogSettings(),
    )


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix per test: each test gets its own topics on the shared broker."""
    return f"t{os.getpid()}-{next(_prefixes)}."


@pytest.fixture
def platform(local_stack: LocalStack, topic_prefix: str) -> Platform:
    return Platform(make_settings(local_stack, topic_prefix))
