"""The batch encoder of AnomalyScored and the batched derived ids equal fastavro and uuid5 exactly."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
from fastavro import schemaless_reader, schemaless_writer

from events.framing import header
from events.schemas import parse
from streams.anomaly.wire import ScoredEncoder, layout_is_known, varints
from streams.ids import derived_id, derived_ids

SCHEMA = json.loads((Path(__file__).parents[3] / "schemas" / "AnomalyScored.v1.avsc").read_text())


def _readings(rng: np.random.Generator, n: int) -> list[dict]:
    odd = ["", "é", "☃ sensor", "x" * 63, "y" * 64, "z" * 200, "tw-1"]
    out = []
    for i in range(n):
        out.append({
            "event_id": str(uuid.UUID(int=int(rng.integers(0, 2**63)))) if i % 5 else odd[i % len(odd)],
            "occurred_at": int(rng.choice([0, 1, -1, 63, 64, -65, 2**62, -(2**63), 2**63 - 1,
                                            int(rng.integers(-(2**40), 2**52))])),
            "correlation_id": None if i % 3 else odd[i % len(odd)] + str(i),
            "twin_id": odd[i % len(odd)] if i % 4 == 0 else f"tw-{i % 11}",
            "sensor_id": odd[(i + 3) % len(odd)],
            "value": float(rng.choice([0.0, -0.0, 1e308, -1e-308, 5e-324, float(rng.normal(0, 1e6))])),
        })
    return out


def test_scored_records_are_byte_for_byte_what_fastavro_writes():
    rng = np.random.default_rng(11)
    parsed = parse(SCHEMA)
    assert layout_is_known(parsed)
    rows = _readings(rng, 3000)
    eids = [str(uuid.uuid4()) if i % 7 else "not-a-uuid-" + str(i) for i in range(len(rows))]
    scores = rng.random(len(rows))
    scores[:10] = [0.0, 1.0, 0.5, 1e-300, 0.999999999, 0.25, 0.0, 1.0, 0.3, 0.7]
    flags = rng.random(len(rows)) < 0.3
    hdr = header(42)
    for recorded_at in (1_700_000_000_000_000, -5, 0):
        enc = ScoredEncoder(hdr, source="score", model_name="robust-seasonal+iforest", model_version="1")
        got = enc.encode(eids, rows, recorded_at, scores, flags)
        for eid, r, sc, fl, blob in zip(eids, rows, scores.tolist(), flags.tolist(), got):
            rec = {"event_id": eid, "event_type": "AnomalyScored", "occurred_at": r["occurred_at"],
                   "recorded_at": recorded_at, "source": "score", "correlation_id": r["correlation_id"],
                   "causation_id": r["event_id"], "twin_id": r["twin_id"], "sensor_id": r["sensor_id"],
                   "reading_event_id": r["event_id"], "value": r["value"], "score": sc, "is_anomaly": fl,
                   "model_name": "robust-seasonal+iforest", "model_version": "1"}
            buf = io.BytesIO()
            buf.write(hdr)
            schemaless_writer(buf, parsed, rec)
            assert blob == buf.getvalue(), rec
        # and it reads back with the schema
        back = schemaless_reader(io.BytesIO(got[1][5:]), parse(SCHEMA), None)
        assert back["score"] == scores[1] and back["is_anomaly"] == bool(flags[1])


def test_a_changed_schema_is_not_taken_for_the_known_layout():
    changed = json.loads(json.dumps(SCHEMA))
    changed["fields"].insert(11, {"name": "extra", "type": "int", "default": 0})
    assert not layout_is_known(parse(changed))
    renamed = json.loads(json.dumps(SCHEMA))
    renamed["fields"][11]["type"] = "float"
    assert not layout_is_known(parse(renamed))


def test_varints_match_the_zigzag_encoding_of_every_width():
    vals = np.array([0, -1, 1, 63, -64, 64, 8191, -8192, 2**31, -(2**31), 2**62, 2**63 - 1, -(2**63)], np.int64)
    parsed = parse({"type": "record", "name": "L", "fields": [{"name": "x", "type": "long"}]})
    for v, got in zip(vals.tolist(), varints(vals)):
        buf = io.BytesIO()
        schemaless_writer(buf, parsed, {"x": v})
        assert got == buf.getvalue(), v


def test_batched_derived_ids_equal_uuid5_one_by_one():
    parts = [str(uuid.uuid4()) for _ in range(2000)] + ["", "é☃", "a" * 500, "x\x00y"]
    assert derived_ids("score", parts) == [str(derived_id("score", p)) for p in parts]
    assert derived_ids("alert", parts[:3]) == [str(derived_id("alert", p)) for p in parts[:3]]
    assert derived_ids("score", []) == []


def test_batches_of_one_two_and_none_encode_like_the_whole():
    rng = np.random.default_rng(5)
    rows = _readings(rng, 40)
    eids = [str(uuid.uuid4()) for _ in rows]
    scores, flags = rng.random(len(rows)), rng.random(len(rows)) < 0.5
    enc = ScoredEncoder(header(7), source="score", model_name="m", model_version="1")
    whole = enc.encode(eids, rows, 123, scores, flags)
    assert enc.encode([], [], 123, scores[:0], flags[:0]) == []
    for a, b in ((0, 1), (1, 3), (39, 40)):
        assert enc.encode(eids[a:b], rows[a:b], 123, scores[a:b], flags[a:b]) == whole[a:b]
