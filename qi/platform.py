"""The one place that wires components together.

:class:`Platform` turns :class:`~qi.config.Settings` into connected parts:
endpoints (explicit URLs, else the local stack's), the schema catalogue and
registry, the serde, publishers and readers. CLI commands, the demo and tests
build everything through it; nothing else constructs clients from settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from events.admin import TopicState, ensure_topics
from events.publisher import Publisher
from events.reader import EventReader, StartAt
from events.registry import BuiltinRegistry, ConfluentRegistry, SchemaRegistry
from events.schemas import SchemaCatalog
from events.serde import Serde
from events.topics import TopicNames
from qi.config import Settings
from qi.stack import LocalStack
from streams.processor import Processor
from streams.runner import BatchRunner


class ConfigError(Exception):
    """Configuration is missing or contradictory; the message says what to set."""


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    postgres: str | None
    clickhouse: str | None
    redis: str | None
    mqtt: str | None


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def stack(self) -> LocalStack:
        s = self.settings.stack
        return LocalStack(s.run_dir, mqtt_broker=s.mqtt_broker, start_timeout_s=s.start_timeout_s,
                          log_storage=s.log_storage, topic_prefix=self.settings.kafka.topic_prefix)

    @property
    def uses_local_stack(self) -> bool:
        """True unless Kafka is configured explicitly."""
        return self.settings.kafka.bootstrap is None

    def endpoints(self) -> Endpoints:
        """Explicit URLs win; anything unset comes from the running local stack."""
        s = self.settings
        local = self.stack.urls() if self.stack.state_file.exists() else {}

        def pick(explicit: object, name: str) -> str | None:
            if explicit is not None:
                return explicit.get_secret_value() if hasattr(explicit, "get_secret_value") else str(explicit)
            return local.get(name)

        kafka = pick(s.kafka.bootstrap, "kafka")
        if kafka is None:
            raise ConfigError("no Kafka configured: run `qi stack up` or set QI_KAFKA_BOOTSTRAP=host:port")
        return Endpoints(
            kafka=kafka,
            postgres=pick(s.postgres.dsn, "postgres"),
            clickhouse=pick(s.clickhouse.dsn, "clickhouse"),
            redis=pick(s.redis.url, "redis"),
            mqtt=pick(s.mqtt.url, "mqtt"),
        )

    @cached_property
    def topics(self) -> TopicNames:
        return TopicNames(self.settings.kafka.topic_prefix)

    @cached_property
    def catalog(self) -> SchemaCatalog:
        return SchemaCatalog.load()

    def registry(self) -> SchemaRegistry:
        r = self.settings.schema_registry
        if r.url is None:
            return BuiltinRegistry(self.catalog)
        return ConfluentRegistry(
            r.url, username=r.username, password=r.password.get_secret_value() if r.password else None
        )

    async def serde(self) -> Serde:
        """A prepared serde (schemas registered, encoders cached)."""
        serde = Serde(self.catalog, self.registry(), self.topics)
        await serde.prepare()
        return serde

    def wanted_topics(self) -> dict[str, int]:
        k = self.settings.kafka
        return {name: k.partitions_for(family) for family, name in self.topics.all().items()}

    async def ensure_topics(self) -> list[TopicState]:
        k = self.settings.kafka
        return await ensure_topics(
            self.endpoints().kafka, self.wanted_topics(), replication_factor=k.replication_factor
        )

    def publisher(self, serde: Serde) -> Publisher:
        return Publisher(
            bootstrap=self.endpoints().kafka,
            serde=serde,
            topics=self.topics,
            client_id=f"{self.settings.kafka.client_id}-publisher",
        )

    def reader(self, serde: Serde, topics: list[str], start_at: StartAt = "beginning") -> EventReader:
        return EventReader(
            bootstrap=self.endpoints().kafka,
            serde=serde,
            topics=[self.topics.resolve(t) for t in topics],
            start_at=start_at,
            client_id=f"{self.settings.kafka.client_id}-reader",
        )

    def batch_runner(self, processor: Processor, serde: Serde) -> BatchRunner:
        """A batch runner for ``processor`` in the consumer group ``<client_id>-<processor.name>``."""
        k = self.settings.kafka
        return BatchRunner(
            bootstrap=self.endpoints().kafka,
            group_id=f"{k.client_id}-{processor.name}",
            client_id=f"{k.client_id}-{processor.name}",
            processor=processor,
            publisher=Publisher(
                bootstrap=self.endpoints().kafka, serde=serde, topics=self.topics,
                client_id=f"{k.client_id}-{processor.name}-out",
            ),
            serde=serde,
            topics=self.topics,
            settings=self.settings.runner,
        )
