"""Events -> columnar rows of the warehouse tables (pure, no I/O).

Records are expected decoded ``plain`` (uuids as str, timestamps as int
microseconds); datetimes from a ``logical`` decode are converted. Every event
becomes one ``events`` row; readings, scores, alerts and certificate events
also get a row in their own table.

A table's rows leave as one Arrow table (``Columns.arrow``): the Python lists
are converted to Arrow columns in C (ids as strings, times as
``timestamp[us, UTC]`` straight from the int micros), and ClickHouse reads the
Arrow block natively and casts to the table's types (UUID, LowCardinality).
That replaces clickhouse-connect's per-value Python serialisation of the
Native format (docs/decisions/0064-warehouse-arrow-inserts.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from events.jsonfmt import _default

EVENTS_COLUMNS = ("event_id", "event_type", "occurred_at", "recorded_at", "source", "correlation_id",
                  "causation_id", "aggregate_id", "twin_id", "sensor_id", "certificate_id", "key", "topic",
                  "partition", "offset", "schema_id", "payload")
READINGS_COLUMNS = ("twin_id", "sensor_id", "occurred_at", "event_id", "quantity", "value", "unit",
                    "recorded_at", "source")
SCORES_COLUMNS = ("twin_id", "sensor_id", "occurred_at", "event_id", "reading_event_id", "value", "score",
                  "is_anomaly", "model_name", "model_version", "recorded_at")
ALERTS_COLUMNS = ("twin_id", "sensor_id", "occurred_at", "event_id", "state", "score", "threshold",
                  "reading_event_id", "model_name", "model_version", "recorded_at")
CERTIFICATE_COLUMNS = ("certificate_id", "occurred_at", "event_id", "event_type", "version", "twin_id",
                       "issuer_id", "certificate_kind", "valid_from", "valid_until", "verdict", "reason",
                       "superseded_by")

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": EVENTS_COLUMNS,
    "readings": READINGS_COLUMNS,
    "scores": SCORES_COLUMNS,
    "alerts": ALERTS_COLUMNS,
    "certificate_history": CERTIFICATE_COLUMNS,
}

_S, _B, _TS, _F = pa.string(), pa.binary(), pa.timestamp("us", tz="UTC"), pa.float64()
#: Arrow type of every column (ids, keys and payloads as strings/bytes; ClickHouse casts on insert).
ARROW_TYPES: dict[str, dict[str, pa.DataType]] = {
    "events": {"event_id": _S, "event_type": _S, "occurred_at": _TS, "recorded_at": _TS, "source": _S,
               "correlation_id": _S, "causation_id": _S, "aggregate_id": _S, "twin_id": _S, "sensor_id": _S,
               "certificate_id": _S, "key": _B, "topic": _S, "partition": pa.uint32(), "offset": pa.uint64(),
               "schema_id": pa.uint32(), "payload": _B},
    "readings": {"twin_id": _S, "sensor_id": _S, "occurred_at": _TS, "event_id": _S, "quantity": _S, "value": _F,
                 "unit": _S, "recorded_at": _TS, "source": _S},
    "scores": {"twin_id": _S, "sensor_id": _S, "occurred_at": _TS, "event_id": _S, "reading_event_id": _S,
               "value": _F, "score": _F, "is_anomaly": pa.bool_(), "model_name": _S, "model_version": _S,
               "recorded_at": _TS},
    "alerts": {"twin_id": _S, "sensor_id": _S, "occurred_at": _TS, "event_id": _S, "state": _S, "score": _F,
               "threshold": _F, "reading_event_id": _S, "model_name": _S, "model_version": _S, "recorded_at": _TS},
    "certificate_history": {"certificate_id": _S, "occurred_at": _TS, "event_id": _S, "event_type": _S,
                            "version": pa.int64(), "twin_id": _S, "issuer_id": _S, "certificate_kind": _S,
                            "valid_from": _TS, "valid_until": _TS, "verdict": _S, "reason": _S,
                            "superseded_by": _S},
}


def payload(record: dict[str, Any]) -> bytes:
    """The record as compact JSON (UTF-8; bytes base64, times int micros in a plain decode)."""
    return orjson.dumps(record, default=_default)

CERTIFICATE_EVENTS = frozenset({"CertificateIssued", "CertificateValidated", "CertificateRevoked",
                                "CertificateSuperseded", "CertificateExpiring"})


def micros(value: Any) -> int:
    """Event time as int microseconds since the epoch (plain decode) from an int or a datetime."""
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return int(value.timestamp()) * 1_000_000 + value.microsecond
    raise TypeError(f"not a timestamp: {value!r}")


class Columns:
    """Rows of one table, kept column-wise: one list per column, appended to as events come.

    Kept as columns (not row tuples transposed at write time) because the transposition,
    ``zip(*rows)``, made one iterator object per row: at 10,000s of rows those allocations ran the
    cyclic GC over every live object several times per write, several us per event of GIL-held
    time in the writer thread, which the event loop then waited for (docs/decisions/0058)."""

    __slots__ = ("names", "types", "cols", "put")

    def __init__(self, names: tuple[str, ...], types: dict[str, pa.DataType] | None = None) -> None:
        self.names = names
        self.types = types
        self.cols: list[list[Any]] = [[] for _ in names]
        #: the columns' ``append`` methods, in column order (the hot path calls them directly)
        self.put = tuple(c.append for c in self.cols)

    def __len__(self) -> int:
        return len(self.cols[0])

    def append(self, row: tuple[Any, ...]) -> None:
        for put, value in zip(self.put, row, strict=True):
            put(value)

    def extend(self, other: Columns) -> None:
        for col, more in zip(self.cols, other.cols, strict=True):
            col.extend(more)

    @property
    def data(self) -> list[list[Any]]:
        """One list per column."""
        return self.cols

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        """The rows as tuples (for tests and debugging; the write path uses the columns)."""
        return list(zip(*self.cols))

    def arrow(self) -> pa.Table:
        """The columns as one Arrow table (each list converted in C)."""
        types = self.types or {}
        return pa.Table.from_arrays([pa.array(col, type=types.get(name)) for name, col in zip(self.names, self.cols)],
                                    names=list(self.names))


class WarehouseBatch:
    """The rows one fetch adds to every table, and the positions it reaches."""

    def __init__(self) -> None:
        self.tables: dict[str, Columns] = {t: Columns(c, ARROW_TYPES[t]) for t, c in TABLE_COLUMNS.items()}
        #: (topic, partition) -> next offset to read
        self.positions: dict[tuple[str, int], int] = {}
        self._first: dict[tuple[str, int], int] = {}

    def add(self, topic: str, partition: int, offset: int, key: bytes | None, event_type: str,
            schema_id: int, record: dict[str, Any]) -> None:
        tp = (topic, partition)
        self._first.setdefault(tp, offset)
        if offset + 1 > self.positions.get(tp, -1):
            self.positions[tp] = offset + 1
        add_event(self.tables, topic, partition, offset, key, event_type, schema_id, record)

    @property
    def events(self) -> int:
        return len(self.tables["events"])

    def merge(self, other: WarehouseBatch) -> None:
        """Append another batch's rows and positions (later fetches of the same partitions)."""
        for name, cols in other.tables.items():
            self.tables[name].extend(cols)
        for tp, first in other._first.items():
            self._first.setdefault(tp, first)
        for tp, end in other.positions.items():
            if end > self.positions.get(tp, -1):
                self.positions[tp] = end

    def dedup_token(self, table: str) -> str:
        """Same records (same offset ranges) -> same token, so a repeated insert is dropped."""
        ranges = ",".join(f"{t}/{p}:{self._first[(t, p)]}-{end}" for (t, p), end in sorted(self.positions.items()))
        return f"{table}:" + hashlib.sha256(ranges.encode()).hexdigest()[:32]


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def add_event(tables: dict[str, Columns], topic: str, partition: int, offset: int, key: bytes | None,
              event_type: str, schema_id: int, r: dict[str, Any]) -> None:
    """Append one event's rows to ``tables``.

    Hot path (one call per event): a plain decode already holds ids as str and times as int
    micros, so those are taken as they are and converted only when not (docs/decisions/0056).
    """
    get = r.get
    event_id = r["event_id"]
    if event_id.__class__ is not str:
        event_id = str(event_id)
    occurred = r["occurred_at"]
    if occurred.__class__ is not int:
        occurred = micros(occurred)
    recorded = r["recorded_at"]
    if recorded.__class__ is not int:
        recorded = micros(recorded)
    twin_id = get("twin_id")
    if twin_id is None and event_type == "CertificateIssued":
        twin_id = r["administrative"]["item"]["twin_id"]
    certificate_id = get("certificate_id")
    sensor_id = get("sensor_id")
    aggregate_id = certificate_id or twin_id or get("issuer_id") or get("log_id") or ""
    e = tables["events"].put
    e[0](event_id); e[1](event_type); e[2](occurred); e[3](recorded); e[4](r["source"])  # noqa: E702
    e[5](get("correlation_id")); e[6](get("causation_id")); e[7](aggregate_id)  # noqa: E702
    e[8]("" if twin_id is None else str(twin_id)); e[9]("" if sensor_id is None else str(sensor_id))  # noqa: E702
    e[10]("" if certificate_id is None else str(certificate_id)); e[11](key or b""); e[12](topic)  # noqa: E702
    e[13](partition); e[14](offset); e[15](schema_id); e[16](payload(r))  # noqa: E702
    if event_type == "SensorReading":
        t = tables["readings"].put
        t[0](twin_id); t[1](r["sensor_id"]); t[2](occurred); t[3](event_id); t[4](r["quantity"])  # noqa: E702
        t[5](r["value"]); t[6](r["unit"]); t[7](recorded); t[8](r["source"])  # noqa: E702
    elif event_type == "AnomalyScored":
        t = tables["scores"].put
        t[0](twin_id); t[1](r["sensor_id"]); t[2](occurred); t[3](event_id)  # noqa: E702
        t[4](str(r["reading_event_id"])); t[5](r["value"]); t[6](r["score"]); t[7](r["is_anomaly"])  # noqa: E702
        t[8](r["model_name"]); t[9](r["model_version"]); t[10](recorded)  # noqa: E702
    elif event_type == "AnomalyDetected":
        tables["alerts"].append((twin_id, r["sensor_id"], occurred, event_id, r["state"], r["score"],
                                 r["threshold"], str(r["reading_event_id"]), r["model_name"],
                                 r["model_version"], recorded))
    elif event_type in CERTIFICATE_EVENTS:
        tables["certificate_history"].append(
            _certificate_row(event_type, event_id, occurred, _str(twin_id), r))


def _certificate_row(event_type: str, event_id: str, occurred: int, twin_id: str,
                     r: dict[str, Any]) -> tuple[Any, ...]:
    version = r.get("aggregate_version", r.get("certificate_version", 0))
    issuer_id = kind = verdict = reason = superseded_by = ""
    valid_from = valid_until = None
    if event_type == "CertificateIssued":
        issuer_id = r["administrative"]["issuer_id"]
        kind = r["certificate_kind"]
        valid_from, valid_until = micros(r["validity"]["valid_from"]), micros(r["validity"]["valid_until"])
    elif event_type == "CertificateValidated":
        verdict = r["verdict"]
    elif event_type == "CertificateRevoked":
        reason = r["reason"]
    elif event_type == "CertificateSuperseded":
        reason, superseded_by = _str(r.get("reason")), r["superseded_by"]
    elif event_type == "CertificateExpiring":
        valid_until = micros(r["valid_until"])
    return (r["certificate_id"], occurred, event_id, event_type, version, twin_id, issuer_id, kind,
            valid_from, valid_until, verdict, reason, superseded_by)


def batch_of(records: Iterable[Any]) -> WarehouseBatch:
    """A batch from consumed records (``events.reader.ConsumedRecord`` with ``decoded`` set).

    Same result as ``WarehouseBatch.add`` per record, with the positions kept in locals."""
    b = WarehouseBatch()
    tables, first, positions = b.tables, b._first, b.positions
    for rec in records:
        d = rec.decoded
        tp, offset = (rec.topic, rec.partition), rec.offset
        if tp not in first:
            first[tp] = offset
        if offset + 1 > positions.get(tp, -1):
            positions[tp] = offset + 1
        add_event(tables, rec.topic, rec.partition, offset, rec.key, d.event_type, d.schema_id, d.record)
    return b
