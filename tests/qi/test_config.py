from pathlib import Path

from qi.config import Settings


def test_endpoints_come_from_the_documented_variables(monkeypatch):
    for name, value in {
        "QI_KAFKA_BOOTSTRAP": "kafka:9092",
        "QI_POSTGRES_DSN": "postgresql://qi:secret@pg/qi",
        "QI_CLICKHOUSE_DSN": "http://ch:8123",
        "QI_REDIS_URL": "redis://r:6379/0",
        "QI_MQTT_URL": "mqtt://m:1883",
        "QI_KAFKA_PARTITIONS_PER_FAMILY": '{"readings": 12}',
        "QI_STACK_RUN_DIR": "/tmp/x",
    }.items():
        monkeypatch.setenv(name, value)
    s = Settings.from_env()
    assert s.kafka.bootstrap == "kafka:9092"
    assert s.postgres.dsn.get_secret_value() == "postgresql://qi:secret@pg/qi"
    assert "secret" not in repr(s) and "secret" not in str(s.model_dump())
    assert s.clickhouse.dsn.get_secret_value() == "http://ch:8123"
    assert s.kafka.partitions_for("readings") == 12 and s.kafka.partitions_for("twins") == 3
    assert s.stack.run_dir == Path("/tmp/x")


def test_defaults_use_the_local_stack(monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("QI_"):
            monkeypatch.delenv(k)
    s = Settings.from_env()
    assert s.kafka.bootstrap is None and s.postgres.dsn is None and s.schema_registry.url is None
