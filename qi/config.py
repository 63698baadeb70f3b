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
    database: str = Field("qi", description="the warehouse's database (tables, positions, migrations)")
    batch_rows: int = Field(20_000, ge=1, description="the projector inserts once this many events are buffered...")
    batch_max_delay_ms: int = Field(200, ge=0, description="...or once the oldest buffered event waited this long")
    readers: int = Field(2, ge=1, le=16, description="read-only chDB handles the warehouse owner answers SQL on, "
                                                     "concurrently (embedded only)")


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
    session_timeout_ms: int = Field(4_000, ge=1000, description="a dead member is replaced after this; "
                                    "the embedded broker also holds each join for half of it (decision 0073)")
    heartbeat_interval_ms: int = Field(1_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    max_partition_fetch_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    fetch_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    retry_initial_s: float = Field(0.2, gt=0, description="first backoff after a transient failure")
    retry_max_s: float = Field(5.0, gt=0, description="longest backoff between retries")
    report_every_s: float = Field(10.0, gt=0, description="how often counters are logged")
    ready_max_lag: int = Field(1000, ge=0, description="/ready is false while further behind than this")
    health_host: str = Field("127.0.0.1", description="where /health /ready /live /metrics listen")
    health_port: int = Field(0, ge=0, le=65535, description="their port (0: any free port, announced in the run dir)")
    instance: str | None = Field(None, description="this process's name in the fleet (set by the supervisor)")
    standby: bool = Field(False, description="a warm spare: prepare, then wait on stdin to be promoted "
                          "(set by the supervisor; docs/decisions/0074)")


class FleetSettings(BaseSettings):
    """The worker processes `qi up` runs (``QI_FLEET_*``)."""

    model_config = _cfg("QI_FLEET_")

    instances: dict[str, int] = Field(
        default_factory=dict,
        description='processes per worker, e.g. {"score": 2, "bridge": 0} (JSON); default 1 each',
    )
    bridge_config: Path = Field(Path("connectors/mqtt/examples/plant.toml"),
                                description="the MQTT bridge's mapping file")
    stop_grace_s: float = Field(15.0, gt=0, description="SIGTERM, then SIGKILL after this long")
    standby: bool = Field(True, description="keep a warm spare process per worker instance, promoted when "
                          "the instance dies (restart in seconds instead of a cold start; docs/decisions/0074)")


class AuditSettings(BaseSettings):
    """The transparency log (``QI_AUDIT_*``); see docs/audit.md."""

    model_config = _cfg("QI_AUDIT_")

    log_id: str = Field("qi-stream.local/audit", description="the log's origin line in checkpoints")
    families: list[str] = Field(
        default_factory=lambda: ["twins", "issuers", "certificates", "readings", "validations", "alerts",
                                 "deadletter"],
        description="topic families whose records become leaves (JSON list; add 'scores' to log scores)",
    )
    head_every_entries: int = Field(10_000, ge=1, description="sign a tree head after this many new leaves")
    head_every_s: float = Field(10.0, gt=0, description="... or after this many seconds with new leaves")
    key_dir: Path | None = Field(None, description="where the log's key pair lives; unset: <run_dir>/keys")
    key_name: str = Field("audit-log", description="file name stem of the key pair (`qi keys generate --log`)")
    pg_schema: str = Field("audit", description="Postgres schema of the log's tables")
    max_batch: int = Field(20_000, ge=1, description="most records per batch: one Postgres transaction each")


class BridgeSettings(BaseSettings):
    """The MQTT bridge's runtime (``QI_BRIDGE_*``); the mapping lives in its own file."""

    model_config = _cfg("QI_BRIDGE_")

    max_in_flight: int = Field(2000, ge=1, description="MQTT messages received but not yet acknowledged; "
                               "at the limit the bridge stops reading from the broker")
    max_batch: int = Field(1000, ge=1, description="most messages per Kafka production")
    linger_ms: float = Field(2.0, ge=0, description="how long a batch waits for more messages")
    max_pending_batches: int = Field(2, ge=1, description="Kafka productions awaiting acknowledgement at once")
    kafka_request_timeout_ms: int = Field(30_000, ge=1000, description="a production not acknowledged by "
                                          "then fails and is retried by the bridge")
    retry_initial_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(5.0, gt=0)
    report_every_s: float = Field(10.0, gt=0, description="how often counters are logged")
    keepalive_s: int = Field(30, ge=5)
    username: str | None = Field(None, description="MQTT user (else from QI_MQTT_URL)")
    password: SecretStr | None = Field(None, description="MQTT password (else from QI_MQTT_URL)")
    tls: bool = Field(False, description="TLS to the broker (also on with an mqtts:// URL)")
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_insecure: bool = Field(False, description="skip hostname verification (tests only)")


class ApiSettings(BaseSettings):
    """The HTTP API (``QI_API_*``); see docs/api.md."""

    model_config = _cfg("QI_API_")

    host: str = Field("127.0.0.1", description="where `qi api` listens")
    port: int = Field(0, ge=0, le=65535, description="its port (0: any free port, announced in the run dir)")
    workers: int = Field(1, ge=1, le=32, description="uvicorn worker processes sharing the port")
    token_key: SecretStr | None = Field(None, description="HS256 key of the bearer tokens (>= 32 bytes)")
    token_key_file: Path | None = Field(None, description="...or a file holding it; unset: <run dir>/keys/api-token.secret")
    token_issuer: str = Field("qi-stream", description="`iss` of the tokens issued and accepted")
    token_ttl_s: int = Field(30 * 86400, ge=60, description="default lifetime of `qi tokens issue`")
    verify_rate_per_s: float = Field(20.0, gt=0, description="public /verify: tokens per second per client...")
    verify_burst: int = Field(40, ge=1, description="...and the bucket's size")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies get 413")
    max_batch_events: int = Field(1000, ge=1, description="most events per POST /events")
    max_page: int = Field(500, ge=1, description="largest `limit` of any list")
    max_range_days: float = Field(31.0, gt=0, description="longest time range of a readings query")
    max_points: int = Field(5000, ge=10, description="most points a readings query returns (downsampled above)")
    cache_s: float = Field(1.0, ge=0, description="how long the latest signed checkpoint is reused")
    verify_cache_s: float = Field(10.0, ge=0, description="how long a certificate's proof, signatures and "
                                  "issuer key are reused by /verify (its status is read every time)")


class LogSettings(BaseSettings):
    model_config = _cfg("QI_LOG_")

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"
    fields: dict[str, str] = Field(default_factory=dict,
                                   description='added to every line, e.g. {"worker": "score"} (JSON; set by `qi up`)')


class AnomalySettings(BaseSettings):
    """The scoring worker (``QI_ANOMALY_*``); the scorer's own defaults are in streams/anomaly/config.py."""

    model_config = _cfg("QI_ANOMALY_")

    snapshot_every_batches: int = Field(20, ge=1, description="write scorer snapshots every N batches...")
    snapshot_every_s: float = Field(5.0, gt=0, description="...or after this many seconds, whichever first")
    warmup: int = Field(128, ge=1, description="readings per sensor before its scores count")
    raise_at: float = Field(0.5, gt=0, le=1, description="score that raises an alert (p <= 1e-4)")
    clear_at: float = Field(0.25, ge=0, le=1, description="score below which an alert calms down")
    clear_after: int = Field(12, ge=1, description="readings below clear_at that clear an alert")


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
    audit: AuditSettings = Field(default_factory=AuditSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    anomaly: AnomalySettings = Field(default_factory=AnomalySettings)
    validation: "ValidationSettings" = Field(default_factory=lambda: ValidationSettings())
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

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
            audit=AuditSettings(),
            fleet=FleetSettings(),
            anomaly=AnomalySettings(),
            validation=ValidationSettings(),
            bridge=BridgeSettings(),
            api=ApiSettings(),
        )


class ValidationSettings(BaseSettings):
    """The certificate-validation worker on faust (``QI_VALIDATION_*``)."""

    model_config = _cfg("QI_VALIDATION_")

    recheck_interval_s: float = Field(1.0, gt=0, description="how often pending certificates and expiry are checked")
    pending_timeout_s: float = Field(
        3600.0, gt=0, description="a certificate waiting for its twin/issuer key longer than this is judged INVALID")
    expiring_lead_s: float = Field(30 * 86400.0, ge=0, description="CertificateExpiring goes out this long before valid_until")
    max_validity_days: int = Field(3650, ge=1, description="longest validity window accepted")
    session_timeout_s: float = Field(2.0, gt=0, description="a dead worker's partitions move after this "
                                     "(the embedded broker holds each join for half of it: decisions 0073, 0078)")
    heartbeat_interval_s: float = Field(0.5, gt=0, description="faust heartbeats from its consumer thread (0078)")
    commit_interval_s: float = Field(1.0, gt=0, description="how often consumed offsets are committed")
    web_port: int = Field(0, ge=0, le=65535, description="faust's web port (0: any free port)")
    data_dir: Path | None = Field(None, description="faust's data directory (default: <run dir>/faust/<app id>)")


Settings.model_rebuild()
