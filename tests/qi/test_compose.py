"""docker-compose.kafka.yml cannot run here (no Docker engine): read it and check it."""

from pathlib import Path

import pytest
import yaml

from qi.config import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Infrastructure the configuration expects, by compose service name.
INFRASTRUCTURE = {"kafka", "schema-registry", "postgres", "clickhouse", "redis", "mosquitto"}
#: QI Stream's own services so far (add each new worker here and in the compose file).
WORKERS = {"qi-topics": ["qi", "topics", "create"]}
WORKERS["qi-score"] = ["qi", "worker", "score"]
WORKERS["qi-audit"] = ["qi", "worker", "audit"]
WORKERS["qi-bridge"] = ["qi", "bridge", "mqtt", "--config", "connectors/mqtt/examples/plant.toml"]
WORKERS["qi-warehouse"] = ["qi", "worker", "warehouse"]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())


def _env_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        component = field.annotation
        prefix = component.model_config["env_prefix"]
        names |= {f"{prefix}{name}".upper() for name in component.model_fields}
    return names


def test_every_expected_service_is_there(compose):
    assert INFRASTRUCTURE | set(WORKERS) == set(compose["services"])
    assert "KRaft" in (ROOT / "docker-compose.kafka.yml").read_text()
    kafka_env = compose["services"]["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"] and "ZOOKEEPER" not in str(kafka_env)


def test_workers_run_qi_with_real_config_variables(compose):
    known = _env_names()
    for name, command in WORKERS.items():
        svc = compose["services"][name]
        assert svc["command"] == command
        env = svc["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables qi does not read: {unknown}"
        for required in ("QI_KAFKA_BOOTSTRAP", "QI_SCHEMA_REGISTRY_URL", "QI_POSTGRES_DSN", "QI_CLICKHOUSE_DSN",
                         "QI_REDIS_URL", "QI_MQTT_URL"):
            assert required in env


def test_endpoints_point_at_compose_services(compose):
    env = compose["services"]["qi-topics"]["environment"]
    assert env["QI_KAFKA_BOOTSTRAP"].split(":")[0] == "kafka"
    assert "schema-registry:8081" in env["QI_SCHEMA_REGISTRY_URL"]
    assert "@postgres:5432" in env["QI_POSTGRES_DSN"] and "clickhouse:8123" in env["QI_CLICKHOUSE_DSN"]
    assert env["QI_REDIS_URL"].startswith("redis://redis:") and env["QI_MQTT_URL"].startswith("mqtt://mosquitto:")
