"""Encode/decode throughput of events.serde vs bare fastavro on the same records.

Floor: fastavro.schemaless_writer / schemaless_reader with the parsed schema,
one record at a time (what any hand-written Kafka+Avro code would do).
Ours: Serde.encode (framing header + the same write) and Serde.decode (header
check, schema lookup by id, the same read, trailing-byte check); plus the typed
API (pydantic event -> bytes, bytes -> validated event) for reference.
Rounds alternate floor and ours; the best round of each is reported.

    python -m bench.serde [--records 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastavro import schemaless_reader, schemaless_writer  # noqa: E402

from bench._report import report  # noqa: E402
from events.registry import BuiltinRegistry  # noqa: E402
from events.schemas import SchemaCatalog  # noqa: E402
from events.serde import Serde  # noqa: E402
from events.topics import TopicNames  # noqa: E402
from qi.samples import sample_events  # noqa: E402


def rate(fn, items) -> float:
    t = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cat = SchemaCatalog.load()
    serde = Serde(cat, BuiltinRegistry(cat), TopicNames())
    asyncio.run(serde.prepare())
    samples = sample_events(readings_per_sensor=max(1, args.records // 4))
    rows = []
    for event_type in ("SensorReading", "CertificateIssued"):
        events = [e for e in samples if e.event_type == event_type]
        events = (events * (args.records // len(events) + 1))[: args.records]
        records = [e.to_avro() for e in events]
        parsed = cat.latest(event_type).parsed
        framed = [serde.encode(event_type, r) for r in records]
        bodies = [f[5:] for f in framed]

        def floor_encode(r):
            b = io.BytesIO()
            schemaless_writer(b, parsed, r)
            return b.getvalue()

        best = {"encode": [0.0, 0.0], "decode": [0.0, 0.0]}
        typed = [0.0, 0.0]
        for _ in range(args.rounds):
            best["encode"][0] = max(best["encode"][0], rate(floor_encode, records))
            best["encode"][1] = max(best["encode"][1], rate(lambda r: serde.encode(event_type, r), records))
            best["decode"][0] = max(best["decode"][0], rate(lambda b: schemaless_reader(io.BytesIO(b), parsed), bodies))
            best["decode"][1] = max(best["decode"][1], rate(serde.decode, framed))
            typed[0] = max(typed[0], rate(serde.encode_event, events))
            typed[1] = max(typed[1], rate(lambda f: serde.decode(f).to_event(), framed))
        for op, (floor, ours) in best.items():
            rows.append({"event": event_type, "operation": op, "bare fastavro/s": floor, "qi serde/s": ours,
                         "ratio": ours / floor})
        rows.append({"event": event_type, "operation": "encode typed (pydantic event)", "bare fastavro/s": best["encode"][0],
                     "qi serde/s": typed[0], "ratio": typed[0] / best["encode"][0]})
        rows.append({"event": event_type, "operation": "decode typed (validated event)", "bare fastavro/s": best["decode"][0],
                     "qi serde/s": typed[1], "ratio": typed[1] / best["decode"][0]})
    report("serde", rows, params=vars(args))


if __name__ == "__main__":
    main()
