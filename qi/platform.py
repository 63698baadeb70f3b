"""The one place that wires components together.

:class:`Platform` turns :class:`~qi.config.Settings` into connected parts:
endpoints (explicit URLs, else the local stack's), the schema catalogue and
registry, the serde, publishers and readers. CLI commands, the demo and tests
build everything through it; nothing else constructs clients from settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from events.admin import TopicState, ensure_topics
from events.publisher import Publisher
from events.reader import EventReader, StartAt
from events.registry import BuiltinRegistry, ConfluentRegistry, SchemaRegistry
from events.schemas import SchemaCatalog
from events.serde import Serde
from events.topics import TopicNames
from qi.config import Settings
from qi.stack import LocalStack
from streams.health import HealthFn, HealthServer
from streams.processor import Processor
from streams.runner import BatchRunner

if TYPE_CHECKING:
    from streams.anomaly.processor import ScoreProcessor


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
        self._promoted = False  # see standby_gate

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
            member_file=self.member_file(f"{k.client_id}-{processor.name}"),
        )

    async def standby_gate(self) -> None:
        """A warm spare (``QI_RUNNER_STANDBY``) waits here until promoted; anything else passes at once.
        Called before a worker takes any share of the work (docs/decisions/0074)."""
        if self.settings.runner.standby and not self._promoted:
            from qi.fleet.standby import await_promotion

            await await_promotion()
        self._promoted = True

    def member_file(self, group_id: str):  # -> streams.membership.MemberFile | None
        """Where a supervised instance keeps its member id in ``group_id`` (docs/decisions/0073)."""
        from streams.membership import MemberFile

        instance = self.settings.runner.instance
        return MemberFile(self.stack.run_dir, instance, group_id) if instance else None

    def score_processor(self, serde: Serde) -> ScoreProcessor:
        """The anomaly-scoring processor, its snapshots in Redis (docs/decisions/0030)."""
        from streams.anomaly import ScorerConfig
        from streams.anomaly.processor import ScoreProcessor
        from streams.anomaly.snapshots import SnapshotStore

        redis = self.endpoints().redis
        if redis is None:
            raise ConfigError("the scoring worker keeps snapshots in Redis: set QI_REDIS_URL or run `qi stack up`")
        a = self.settings.anomaly
        config = ScorerConfig(warmup=a.warmup, raise_at=a.raise_at, clear_at=a.clear_at, clear_after=a.clear_after)
        store = SnapshotStore(redis, namespace=f"{self.settings.kafka.client_id}:score:snapshot")
        return ScoreProcessor(serde, self.topics, store, config=config,
                              snapshot_every_batches=a.snapshot_every_batches, snapshot_every_s=a.snapshot_every_s)

    # --- the transparency log (streams/audit) ------------------------------------------------
    def log_key_dir(self) -> Path:
        a = self.settings.audit
        return a.key_dir if a.key_dir is not None else self.settings.stack.run_dir / "keys"

    def log_key_pair(self):  # -> events.signing.HybridKeyPair
        """The audit log's signing key pair (``qi keys generate --log``)."""
        from events.signing import HybridKeyPair, KeyFileError
        from streams.audit.errors import LogKeyError

        d, name = self.log_key_dir(), self.settings.audit.key_name
        try:
            return HybridKeyPair.load(d, name)
        except (KeyFileError, OSError, ValueError) as e:
            raise LogKeyError(f"no log key pair {name!r} in {d}: run `qi keys generate --log`", path=str(d)) from e

    def audit_store(self):  # -> streams.audit.store.AuditStore
        from streams.audit.store import AuditStore

        dsn = self.endpoints().postgres
        if dsn is None:
            raise ConfigError("no Postgres configured: run `qi stack up` or set QI_POSTGRES_DSN")
        a = self.settings.audit
        return AuditStore(dsn, a.log_id, schema=a.pg_schema)

    def audit_processor(self, serde: Serde):  # -> streams.audit.processor.AuditProcessor
        from streams.audit.processor import AuditProcessor
        from streams.audit.writer import AuditWriter

        a = self.settings.audit
        writer = AuditWriter(
            self.audit_store(), self.log_key_pair(), serde, self.topics, log_id=a.log_id,
            head_every_entries=a.head_every_entries, head_every_s=a.head_every_s,
        )
        publisher = Publisher(bootstrap=self.endpoints().kafka, serde=serde, topics=self.topics,
                              client_id=f"{self.settings.kafka.client_id}-audit-heads")
        return AuditProcessor(writer, publisher, families=a.families, head_every_s=a.head_every_s,
                              max_batch=a.max_batch)

    def health_server(self, health: HealthFn, registries: list, *, instance: str) -> HealthServer:
        """/health, /ready, /live and /metrics for one worker process, announced in the run dir."""
        r = self.settings.runner
        return HealthServer(health, registries, host=r.health_host, port=r.health_port,
                            announce=self.stack.run_dir / "health" / f"{instance}.json")

    def projection_sink(self, projection, kind: str, target: str | None = None, *, generation: str | None = None):
        """A sink (``projections``) of ``kind`` postgres|redis|clickhouse for ``projection``; not started.

        Names carry the topic prefix, so deployments (and tests) sharing a store stay apart:
        Postgres schema ``<prefix>registry``, Redis keys ``qi:<prefix>lookups:...``, ClickHouse
        database ``<prefix><projection>``. ``target`` names one explicitly (schema, Redis
        generation, database); ``generation`` is a rebuild's fresh one (``<live>__<generation>``);
        neither: the live target."""
        import re

        ns = re.sub(r"[^a-z0-9_]", "_", self.settings.kafka.topic_prefix.lower())
        if kind == "postgres":
            from projections.postgres import PostgresSink

            dsn = self.endpoints().postgres
            if dsn is None:
                raise ConfigError("no Postgres configured: run `qi stack up` or set QI_POSTGRES_DSN")
            live = ns + projection.name
            return PostgresSink(projection, target or (f"{live}__{generation}" if generation else live), dsn,
                                live=live)
        if kind == "redis":
            from projections.redis_sink import RedisSink

            url = self.endpoints().redis
            if url is None:
                raise ConfigError("no Redis configured: run `qi stack up` or set QI_REDIS_URL")
            return RedisSink(projection, target or generation or "", url, namespace=ns)
        if kind == "clickhouse":
            from projections.clickhouse.sink import ClickHouseSink

            dsn = self.endpoints().clickhouse
            if dsn is None:
                raise ConfigError("no ClickHouse configured: run `qi stack up` or set QI_CLICKHOUSE_DSN")
            live = ns + projection.name
            return ClickHouseSink(projection, target or (f"{live}__{generation}" if generation else live), dsn,
                                  live=live)
        raise ConfigError(f"unknown sink {kind!r}: postgres or redis")

    # -- certificate validation (faust) -------------------------------------------------------

    def validation_topology(self):  # -> streams.validation.app.ValidationTopology
        from streams.validation.app import topology

        k = self.settings.kafka
        return topology(self.topics, k.partitions_for, k.client_id, k.topic_prefix)

    async def ensure_validation_topics(self) -> None:
        """The validation worker's recheck and changelog topics, with the partitions its tables use."""
        k = self.settings.kafka
        await ensure_topics(self.endpoints().kafka, self.validation_topology().internal_topics(),
                            replication_factor=k.replication_factor)

    def validation_app(self, serde: Serde, *, instance: str | None = None):  # -> streams.validation.app.ValidationApp
        """The certificate-validation faust app for one worker process and its fact replica; with
        ``instance``, it also serves /health /ready /live /metrics (announced in the run dir for `qi ps`)."""
        from streams.validation.app import build_app

        topo = self.validation_topology()
        v = self.settings.validation
        data_dir = v.data_dir or self.stack.run_dir / "faust" / topo.app_id
        health = None
        if instance is not None:
            def health(fn, registries):
                return self.health_server(fn, registries, instance=instance)
        return build_app(bootstrap=self.endpoints().kafka, serde=serde, topics=self.topics, topo=topo,
                         settings=v, data_dir=data_dir, health_server=health,
                         ready_max_lag=self.settings.runner.ready_max_lag,
                         member_file=self.member_file(topo.app_id))

    def warehouse(self, database: str | None = None):
        """The ClickHouse warehouse writer (``projections.clickhouse``); not started."""
        from projections.clickhouse.warehouse import ClickHouseWarehouse

        dsn = self.endpoints().clickhouse
        if dsn is None:
            raise ConfigError("no ClickHouse configured: run `qi stack up` or set QI_CLICKHOUSE_DSN")
        return ClickHouseWarehouse(dsn, database or self.settings.clickhouse.database)

    def warehouse_sql_announce(self):
        """Where the process owning an embedded chDB directory announces its SQL endpoint."""
        from projections.clickhouse.query import announce_path

        return announce_path(self.stack.run_dir, self.endpoints().clickhouse or "")

    def mqtt_bridge(self, mapping, serde: Serde):  # noqa: ANN001, ANN201 (connectors.mqtt imports lazily)
        """The MQTT to Kafka bridge for a loaded mapping file (connectors/mqtt, docs/bridge.md)."""
        from connectors.mqtt.bridge import MqttBridge
        from connectors.mqtt.convert import Converter

        url = self.endpoints().mqtt
        if url is None:
            raise ConfigError("no MQTT broker configured: run `qi stack up` or set QI_MQTT_URL=mqtt://host:port")
        return MqttBridge(
            url=url,
            client_id=mapping.bridge.client_id,
            converter=Converter(mapping, serde, self.topics),
            publisher=Publisher(bootstrap=self.endpoints().kafka, serde=serde, topics=self.topics,
                                client_id=f"{self.settings.kafka.client_id}-bridge", linger_ms=0,
                                request_timeout_ms=self.settings.bridge.kafka_request_timeout_ms),
            settings=self.settings.bridge,
        )

    # -- the HTTP API (qi/api) -------------------------------------------------------------------

    def api_tokens(self, *, create: bool = False):  # -> qi.api.auth.Tokens
        """The API's token signer/verifier: QI_API_TOKEN_KEY, else its file (made once if ``create``)."""
        from qi.api.auth import Tokens, load_or_create_key

        a = self.settings.api
        if a.token_key is not None:
            key = a.token_key.get_secret_value().encode()
        else:
            key = load_or_create_key(a.token_key_file or self.log_key_dir() / "api-token.secret", create=create)
        return Tokens(key, issuer=a.token_issuer)

    def api_sources(self):  # -> qi.api.sources.container.ApiSources
        """Everything the API reads and writes, not started (the app's lifespan starts them)."""
        import json
        import re

        from projections.pointintime.replay import FAMILIES
        from projections.registry import LOOKUPS
        from qi.api.sources.audit import AuditReader
        from qi.api.sources.container import ApiSources
        from qi.api.sources.history import RegistryHistory
        from qi.api.sources.ingest import EventIngest
        from qi.api.sources.lookups import LookupReader
        from qi.api.sources.registry import RegistryReader
        from qi.api.sources.warehouse import WarehouseReader

        ep = self.endpoints()
        missing = [n for n, v in (("QI_POSTGRES_DSN", ep.postgres), ("QI_REDIS_URL", ep.redis),
                                  ("QI_CLICKHOUSE_DSN", ep.clickhouse)) if v is None]
        if missing:
            raise ConfigError(f"the API needs {', '.join(missing)}: set them or run `qi stack up`")
        ns = re.sub(r"[^a-z0-9_]", "_", self.settings.kafka.topic_prefix.lower())
        a, api = self.settings.audit, self.settings.api
        pub_path = self.log_key_dir() / f"{a.key_name}.pub.json"
        try:
            public_key = json.loads(pub_path.read_text())
        except (OSError, ValueError):
            public_key = None

        async def publisher():
            return self.publisher(await self.serde())

        return ApiSources(
            registry=RegistryReader(ep.postgres, ns + "registry"),
            lookups=LookupReader(ep.redis, LOOKUPS, namespace=ns),
            warehouse=WarehouseReader(ep.clickhouse, self.settings.clickhouse.database, run_dir=self.stack.run_dir),
            audit=AuditReader(self.audit_store(), bootstrap=ep.kafka, topic_prefix=self.topics.prefix,
                              public_key=public_key, serde_factory=self.serde, cache_s=api.cache_s,
                              client_id=f"{self.settings.kafka.client_id}-api-audit"),
            ingest=EventIngest(publisher),
            history=RegistryHistory(bootstrap=ep.kafka, serde_factory=self.serde,
                                    topics=[self.topics.topic(f) for f in FAMILIES]),
        )

    def api_app(self):  # -> fastapi.FastAPI
        """The HTTP API app (qi/api/app.py) wired to this platform's stores."""
        from qi.api.app import create_app

        app = create_app(self.settings.api, self.api_sources(), self.api_tokens(create=True))
        app.state.live_feed = self.live_feed()
        return app

    def live_feed(self):  # -> qi.api.web.live.LiveFeed
        """The dashboard's live feed: one tail of readings, scores and alerts per API process."""
        from qi.api.web.live import LiveFeed

        return LiveFeed(bootstrap=lambda: self.endpoints().kafka, serde=self.serde, topics=self.topics,
                        client_id=f"{self.settings.kafka.client_id}-api-live")
