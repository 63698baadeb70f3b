"""CPU per reading of the scoring processor, offline (no Kafka, no Redis), and a digest of its outputs.

Feeds ``ScoreProcessor.process`` the decoded records the batch runner would hand it: N readings
over S sensors, spread over P partitions by key, in batches of at most B records (each batch
takes the next B/P records of every partition, as a ``getmany`` over P busy partitions does).
Reports the process CPU time per reading (``time.process_time``: less noisy than wall time on a
shared machine) and, with ``--digest``, a SHA-256 over every output record's topic, key, value
and event id (``recorded_at`` pinned), so two versions of the code can be compared byte for byte.

    python -m bench.score_cpu [--records 100000] [--sensors 100] [--data bench|mixed] [--digest]

``--data bench`` is bench/score.py's series (minute steps, a repeating pattern); ``mixed`` is
seasonal noise with spikes, level shifts, flat stretches and uneven batch cuts (for digests).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import pstats
import sys
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
from aiokafka import TopicPartition

from bench._report import report
from events.schemas import SchemaCatalog
from events.models import SensorReading
from events.reader import ConsumedRecord
from events.registry import BuiltinRegistry
from events.serde import Serde
from events.topics import TopicNames
from streams.anomaly import processor as processor_module
from streams.anomaly.processor import ScoreProcessor

_PINNED_NOW = datetime(2026, 6, 1, tzinfo=UTC)


class _Pinned(datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: ANN001, ANN206
        return _PINNED_NOW


class _NoSnapshots:
    """Stands in for the Redis store: nothing stored, every partition starts fresh."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def load(self, tps):  # noqa: ANN001, ANN201
        return {}

    async def save(self, items) -> None: ...  # noqa: ANN001


def _eid(kind: str, seed: int, i: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_OID, f"{kind}/{seed}/{i}")  # deterministic, so digests compare


def readings(kind: str, n: int, sensors: int, seed: int) -> list[SensorReading]:
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    out = []
    if kind == "bench":
        for i in range(n):
            s = i % sensors
            out.append(SensorReading(event_id=_eid(kind, seed, i),
                                     occurred_at=t0 + timedelta(seconds=60 * (i // sensors)), source="bench",
                                     twin_id=f"tw-{s}", sensor_id="temp", quantity="temperature",
                                     value=20.0 + (i * 7919 % 1000) / 500.0, unit="Cel"))
        return out
    rng = np.random.default_rng(seed)
    per = n // sensors
    t = np.arange(per) * 300.0
    series = []
    for s in range(sensors):
        v = 50 + 10 * np.sin(2 * np.pi * t / 86_400 + s) + rng.normal(0, 1 + s % 3, per)
        for at in rng.choice(per, 3, replace=False):
            v[at] += rng.choice([-1, 1]) * rng.uniform(8, 40)
        if s % 4 == 0:
            v[per // 2:] += 15
        if s % 5 == 1:
            v[per // 3:per // 3 + 200] = 42.0
        series.append(v)
    for i in range(per):
        for s in range(sensors):
            out.append(SensorReading(event_id=_eid(kind, seed, len(out)),
                                     occurred_at=t0 + timedelta(seconds=float(t[i])), source="gen",
                                     twin_id=f"tw-{s}", sensor_id="flow", quantity="flow",
                                     value=float(series[s][i]), unit="l/min", correlation_id=f"c{i % 7}" if s % 2 else None))
    return out


def batches(serde: Serde, events: list[SensorReading], partitions: int, batch: int, seed: int,
            uneven: bool) -> list[list[ConsumedRecord]]:
    topic = TopicNames("").topic("readings")
    per_tp: list[list[ConsumedRecord]] = [[] for _ in range(partitions)]
    for e in events:
        key = e.key().encode()
        p = zlib.crc32(key) % partitions
        value = serde.encode_event(e)
        per_tp[p].append(ConsumedRecord(topic, p, len(per_tp[p]), 0, key, value, serde.decode(value, plain=True), None))
    rng = np.random.default_rng(seed)
    pos = [0] * partitions
    out = []
    while any(pos[p] < len(per_tp[p]) for p in range(partitions)):
        b = []
        for p in range(partitions):
            take = int(rng.integers(1, 2 * batch // partitions)) if uneven else batch // partitions
            b.extend(per_tp[p][pos[p]:pos[p] + take])
            pos[p] += take
        out.append(b)
    return out


async def run(args: argparse.Namespace) -> dict:
    catalog = SchemaCatalog.load()
    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames(""))
    await serde.prepare()
    events = readings(args.data, args.records, args.sensors, args.seed)
    todo = batches(serde, events, args.partitions, args.batch, args.seed, uneven=args.data == "mixed")
    processor_module.datetime = _Pinned  # recorded_at pinned: outputs comparable across runs
    proc = ScoreProcessor(serde, TopicNames(""), _NoSnapshots())
    await proc.start()
    await proc.assigned({TopicPartition(TopicNames("").topic("readings"), p) for p in range(args.partitions)})
    digest = hashlib.sha256()
    outputs = 0
    prof = cProfile.Profile() if args.profile else None
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    for b in todo:
        res = await proc.process(b)
        outputs += len(res.outputs)
        if args.digest:
            for o in res.outputs:
                digest.update(o.topic.encode() + b"\0" + (o.key or b"") + b"\0" + o.value + b"\0" +
                              str(o.event_id).encode() + b"\n")
    if prof:
        prof.disable()
    cpu, wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
    if prof:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    row = {"data": args.data, "records": len(events), "sensors": args.sensors, "partitions": args.partitions,
           "batches": len(todo), "outputs": outputs, "cpu_us_per_reading": round(cpu / len(events) * 1e6, 1),
           "wall_us_per_reading": round(wall / len(events) * 1e6, 1)}
    if args.digest:
        row["digest"] = digest.hexdigest()[:16]
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--data", choices=("bench", "mixed"), default="bench")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--digest", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the processing, to stderr")
    args = ap.parse_args()
    row = asyncio.run(run(args))
    report("score_cpu", [row], params=vars(args))


if __name__ == "__main__":
    main()
