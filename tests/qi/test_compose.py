"""docker-compose.kafka.yml cannot run here (no Docker engine): read it and check it."""

from pathlib import Path

import pytest
import yaml

from qi.config import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Infrastructure the configuration expects, by compose service name.
INFRASTRUCTURE = {"kafka", "schema-registry", "postgres", "clickhouse", "redis", "mosquitto", "prometheus", "grafana"}
#: QI Stream's own services so far (add each new worker here and in the compose file).
WORKERS = {"qi-topics": ["qi", "topics", "create"]}
WORKERS["qi-score"] = ["qi", "worker", "score"]
WORKERS["qi-validate"] = ["qi", "worker", "validate"]
WORKERS["qi-audit"] = ["qi", "worker", "audit"]
WORKERS["qi-warehouse"] = ["qi", "worker", "warehouse"]
WORKERS["qi-project-postgres"] = ["qi", "worker", "project", "--sink", "postgres"]
WORKERS["qi-project-redis"] = ["qi", "worker", "project", "--sink", "redis"]
WORKERS["qi-bridge"] = ["qi", "bridge", "mqtt", "--config", "connectors/mqtt/examples/plant.toml"]


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


def _mounts(svc: dict) -> dict[str, str]:
    """container path -> host path of a service's bind mounts."""
    out = {}
    for v in svc.get("volumes", []):
        host, container = v.split(":")[:2]
        out[container] = host
    return out


def test_prometheus_scrapes_every_worker_on_its_health_port(compose):
    env = compose["x-qi-env"]
    assert env["QI_RUNNER_HEALTH_HOST"] == "0.0.0.0"
    port = int(env["QI_RUNNER_HEALTH_PORT"])
    config_host = _mounts(compose["services"]["prometheus"])["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((ROOT / config_host).read_text())
    scraped = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert sd["port"] == port
            scraped |= set(sd["names"])
        for sc in job.get("static_configs", []):
            scraped |= {t.split(":")[0] for t in sc["targets"] if int(t.split(":")[1]) == port}
    long_running = {name for name in WORKERS if compose["services"][name].get("restart") != "no"}
    assert long_running and scraped == long_running


def test_grafana_is_provisioned_with_the_dashboard_and_the_prometheus_datasource(compose):
    mounts = _mounts(compose["services"]["grafana"])
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    providers = yaml.safe_load((provisioning / "dashboards" / "qi-stream.yml").read_text())["providers"]
    dash_path = providers[0]["options"]["path"]
    assert list((ROOT / mounts[dash_path]).glob("*.json")), "the dashboards directory Grafana reads is empty"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"].split("//")[1].split(":")[0] in compose["services"]
