"""AnomalyScored records encoded for the wire a whole batch at a time.

fastavro's ``schemaless_writer`` walks the schema for every record (~13 us for an AnomalyScored);
one score per reading makes that the biggest per-reading cost of the worker. The record's layout
is fixed by ``schemas/AnomalyScored.v1.avsc``, and most of it is constant per batch (header,
event type, recorded_at, source, model name and version), so :class:`ScoredEncoder` writes the
Avro binary directly: constant pieces once, per-reading strings by concatenation, the longs'
varints and the doubles for the whole batch in numpy. ``tests/streams/anomaly/test_wire.py``
checks it byte for byte against fastavro. :func:`layout_is_known` guards against a schema change:
the processor falls back to ``Serde.encode`` when the writer schema is not the one this module
was written for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from events.avro_binary import encode_long, encode_string

#: the AnomalyScored fields, in order, with the Avro types this encoder writes for them
LAYOUT = (
    ("event_id", "string"), ("event_type", "string"), ("occurred_at", "long"), ("recorded_at", "long"),
    ("source", "string"), ("correlation_id", ("null", "string")), ("causation_id", ("null", "string")),
    ("twin_id", "string"), ("sensor_id", "string"), ("reading_event_id", "string"), ("value", "double"),
    ("score", "double"), ("is_anomaly", "boolean"), ("model_name", "string"), ("model_version", "string"),
)
_TAIL = np.dtype([("value", "<f8"), ("score", "<f8"), ("is_anomaly", "u1")])  # packed: 17 bytes
_KEY_CACHE = 100_000  # (twin_id, sensor_id) encodings remembered; cleared when full


def layout_is_known(parsed_schema: dict[str, Any]) -> bool:
    """Whether a (fastavro-parsed) AnomalyScored schema has exactly the layout encoded here."""
    def plain(t: Any) -> Any:
        if isinstance(t, dict):
            return t["type"]
        if isinstance(t, list):
            return tuple(plain(x) for x in t)
        return t
    fields = parsed_schema.get("fields", [])
    return tuple((f["name"], plain(f["type"])) for f in fields) == LAYOUT


def varints(values: np.ndarray) -> list[bytes]:
    """Avro longs for int64 values, all at once."""
    v = np.asarray(values, np.int64)
    z = (v.astype(np.uint64) << np.uint64(1)) ^ (v >> np.int64(63)).astype(np.uint64)
    groups = np.empty((len(v), 10), np.uint8)
    length = np.ones(len(v), np.int64)
    for k in range(10):
        rest = z >> np.uint64(7 * k)
        more = (rest >> np.uint64(7)) != 0
        groups[:, k] = (rest & np.uint64(0x7F)).astype(np.uint8) | (more.astype(np.uint8) << 7)
        length += more
    flat = groups.tobytes()
    return [flat[i * 10:i * 10 + n] for i, n in enumerate(length.tolist())]


class ScoredEncoder:
    """Framed AnomalyScored records for one batch of scored readings (same bytes as fastavro)."""

    def __init__(self, header: bytes, *, source: str, model_name: str, model_version: str) -> None:
        self._head = header  # the 5-byte frame
        self._event_type = encode_string("AnomalyScored")
        self._source = encode_string(source)
        self._tail = encode_string(model_name) + encode_string(model_version)
        self._keys: dict[tuple[str, str], bytes] = {}

    def encode(self, event_ids: Sequence[str], readings: Sequence[dict[str, Any]], recorded_at: int,
               scores: np.ndarray, is_anomaly: np.ndarray) -> list[bytes]:
        """One record per reading: ``event_ids[i]`` scores ``readings[i]`` (a decoded SensorReading)."""
        n = len(readings)
        occurred = varints(np.fromiter((r["occurred_at"] for r in readings), np.int64, n))
        tail = np.empty(n, _TAIL)
        tail["value"] = np.fromiter((r["value"] for r in readings), np.float64, n)
        tail["score"] = scores
        tail["is_anomaly"] = is_anomaly
        nums = tail.tobytes()
        mid = encode_long(recorded_at) + self._source
        head, etype, end, keys = self._head, self._event_type, self._tail, self._keys
        if len(keys) > _KEY_CACHE:
            keys.clear()
        out = []
        for i, (eid, r, occ) in enumerate(zip(event_ids, readings, occurred)):
            rid = r["event_id"]
            rid_s = b"\x48" + rid.encode() if len(rid) == 36 and rid.isascii() else encode_string(rid)
            corr = r["correlation_id"]
            k = (r["twin_id"], r["sensor_id"])
            twin_sensor = keys.get(k)
            if twin_sensor is None:
                twin_sensor = keys[k] = encode_string(k[0]) + encode_string(k[1])
            out.append(b"".join((
                head, b"\x48" + eid.encode() if len(eid) == 36 and eid.isascii() else encode_string(eid), etype, occ, mid,
                b"\x00" if corr is None else b"\x02" + encode_string(corr),
                b"\x02", rid_s, twin_sensor, rid_s, nums[17 * i:17 * i + 17], end,
            )))
        return out
