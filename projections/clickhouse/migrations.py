"""Versioned DDL of the warehouse.

Each migration is a version, a name and statements with ``{db}`` for the
database. Applied versions are recorded in ``{db}.schema_migrations``; a
migration runs once, in order, and is never edited after release (add a new
one instead).

Every fact table is a ``ReplacingMergeTree`` whose sorting key ends with
``event_id``: a redelivered event has the same sorting key, so ``FINAL`` (and
background merges) keep exactly one row per event. Tables are partitioned by
month of event time and sorted for time-range queries by twin/sensor.
"""

from __future__ import annotations

from dataclasses import dataclass

_TS = "DateTime64(6, 'UTC')"
#: Background merges keep the last duplicate; inserts repeated with the same token are dropped.
_SETTINGS = "SETTINGS non_replicated_deduplication_window = 1000"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, readings, scores, alerts, certificate history, positions", (
        f"""CREATE TABLE IF NOT EXISTS {{db}}.events (
            event_id UUID,
            event_type LowCardinality(String),
            occurred_at {_TS},
            recorded_at {_TS},
            source LowCardinality(String),
            correlation_id Nullable(String),
            causation_id Nullable(String),
            aggregate_id String,
            twin_id String,
            sensor_id String,
            certificate_id String,
            key String,
            topic LowCardinality(String),
            partition UInt32,
            offset UInt64,
            schema_id UInt32,
            payload String
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(occurred_at)
        ORDER BY (event_type, occurred_at, event_id) {_SETTINGS}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.readings (
            twin_id String,
            sensor_id String,
            occurred_at {_TS},
            event_id UUID,
            quantity LowCardinality(String),
            value Float64,
            unit LowCardinality(String),
            recorded_at {_TS},
            source LowCardinality(String)
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(occurred_at)
        ORDER BY (twin_id, sensor_id, occurred_at, event_id) {_SETTINGS}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.scores (
            twin_id String,
            sensor_id String,
            occurred_at {_TS},
            event_id UUID,
            reading_event_id UUID,
            value Float64,
            score Float64,
            is_anomaly Bool,
            model_name LowCardinality(String),
            model_version LowCardinality(String),
            recorded_at {_TS}
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(occurred_at)
        ORDER BY (twin_id, sensor_id, occurred_at, event_id) {_SETTINGS}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.alerts (
            twin_id String,
            sensor_id String,
            occurred_at {_TS},
            event_id UUID,
            state LowCardinality(String),
            score Float64,
            threshold Float64,
            reading_event_id UUID,
            model_name LowCardinality(String),
            model_version LowCardinality(String),
            recorded_at {_TS}
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(occurred_at)
        ORDER BY (twin_id, sensor_id, occurred_at, event_id) {_SETTINGS}""",
        f"""CREATE TABLE IF NOT EXISTS {{db}}.certificate_history (
            certificate_id String,
            occurred_at {_TS},
            event_id UUID,
            event_type LowCardinality(String),
            version Int64,
            twin_id String,
            issuer_id String,
            certificate_kind LowCardinality(String),
            valid_from Nullable({_TS}),
            valid_until Nullable({_TS}),
            verdict LowCardinality(String),
            reason String,
            superseded_by String
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(occurred_at)
        ORDER BY (certificate_id, occurred_at, event_id) {_SETTINGS}""",
        # The next offset to read per partition; the highest wins (a batch is applied before it).
        """CREATE TABLE IF NOT EXISTS {db}.projection_positions (
            projection_name LowCardinality(String),
            topic String,
            partition UInt32,
            next_offset UInt64,
            updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = ReplacingMergeTree(next_offset)
        ORDER BY (projection_name, topic, partition)""",
    )),
)

#: The tables holding events (what a rebuild recreates and compares).
FACT_TABLES = ("events", "readings", "scores", "alerts", "certificate_history")

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY version"""
