"""The whole platform on this machine: publish-to-read-model latency, restart to ready, log restart.

In a stack of its own (``.qi/bench-platform``, durable log, deleted afterwards), ``qi up`` starts
every worker (validate, score, the three projectors, audit, bridge) under the supervisor. Then:

1. **publish_to_read_model**: readings are published to ``readings`` at a steady ``--rate``
   (default 5,000/s) for ``--seconds``, in 20 ms slices. Every 100 ms one of them is a probe on a
   sensor of its own; its latency is the time from handing it to the producer until the Redis
   read model (``qi worker project --sink redis``) shows it as that sensor's latest reading. The
   **floor** is measured on the same probes in the same run: the time until a bare aiokafka
   consumer in this process sees the record (Kafka's own publish-to-consume latency here).
2. **restart_to_ready_s** per worker: once its warm spare waits (docs/decisions/0074), SIGKILL it,
   time until the supervisor has restarted it and its ``/ready`` answers 200;
   ``restart_by_warm_spare`` says whether the spare took over (else it was a cold start).
3. **log_restart_s**: ``bench/log_restart.py``'s measurement (stack down/up of a log holding
   ``--log-events`` events, until the last record of every partition is readable again), with its
   memory-only floor.

    python -m bench.platform [--rate 5000] [--seconds 30] [--log-events 1000000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the stdlib's `platform`: its directory must not shadow it on sys.path.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer  # noqa: E402

from bench import log_restart  # noqa: E402
from bench._report import report  # noqa: E402
from events.publisher import OutgoingRecord  # noqa: E402
from qi.config import Settings  # noqa: E402
from qi.fleet import probe  # noqa: E402
from qi.fleet.supervisor import load_state  # noqa: E402
from qi.platform import Platform  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".qi" / "bench-platform"
SLICE_S = 0.02
PROBE_EVERY_S = 0.1


def qi(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "qi", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"qi {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def encoded_reading(serde, topic: str, i: int, twin: str, sensor: str) -> OutgoingRecord:
    """A SensorReading encoded ahead of time: the load generator must not be the bottleneck."""
    now = datetime.now(UTC)
    value = serde.encode("SensorReading", {
        "event_id": uuid.uuid4(), "event_type": "SensorReading", "occurred_at": now, "recorded_at": now,
        "source": "bench-platform", "correlation_id": None, "causation_id": None,
        "twin_id": twin, "sensor_id": sensor, "quantity": "temperature", "value": 20.0 + (i % 100) / 10,
        "unit": "degC"})
    return OutgoingRecord(topic, f"{twin}/{sensor}".encode(), value)


async def latency(platform: Platform, rate: int, seconds: float) -> dict:
    """Steady load with probes; per probe: publish->Redis read model, and publish->bare consumer."""
    from projections.redis_sink import Lookups
    from projections.registry import PROJECTIONS

    serde = await platform.serde()
    topic = platform.topics.topic("readings")
    sent_at: dict[str, float] = {}          # probe sensor -> monotonic time handed to the producer
    seen_kafka: dict[str, float] = {}
    seen_model: dict[str, float] = {}
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=platform.endpoints().kafka, auto_offset_reset="latest",
                                group_id=f"bench-floor-{uuid.uuid4().hex[:6]}", enable_auto_commit=False)
    await consumer.start()
    await consumer.getmany(timeout_ms=1000)  # joined and positioned at the end before the load starts
    lookups = Lookups(platform.endpoints().redis or "", PROJECTIONS["lookups"])
    await lookups.start()
    stop = asyncio.Event()

    async def floor() -> None:
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for msgs in got.values():
                for m in msgs:
                    if m.key and m.key.startswith(b"bench-probe"):
                        seen_kafka.setdefault(m.key.decode().split("/")[-1], now)

    async def watch_model() -> None:
        while not stop.is_set() or len(seen_model) < len(sent_at):
            for sensor in [s for s in sent_at if s not in seen_model]:
                if (await lookups.sensor("bench-probe", sensor))["reading"] is not None:
                    seen_model[sensor] = time.monotonic()
            await asyncio.sleep(0.01)

    floor_task, model_task = asyncio.create_task(floor()), asyncio.create_task(watch_model())
    per_slice = max(1, round(rate * SLICE_S))
    n_slices = int(seconds / SLICE_S)
    probe_every = max(1, round(PROBE_EVERY_S / SLICE_S))
    slices = []
    for k in range(n_slices):
        base = k * per_slice
        batch = [encoded_reading(serde, topic, base + i, f"bench-twin-{(base + i) % 50}", f"s{(base + i) % 20}")
                 for i in range(per_slice)]
        probe_sensor = f"p{k}" if k % probe_every == 0 else None
        if probe_sensor:
            batch[-1] = encoded_reading(serde, topic, base, "bench-probe", probe_sensor)
        slices.append((probe_sensor, batch))
    published = 0
    in_flight = asyncio.Semaphore(10)  # slices awaiting acknowledgement: the producer pipelines them

    async def send(batch: list[OutgoingRecord]) -> None:
        nonlocal published
        try:
            await pub.publish_records(batch)
            published += len(batch)
        finally:
            in_flight.release()

    async with platform.publisher(serde) as pub:
        t0 = time.monotonic()
        sends = []
        for k, (probe_sensor, batch) in enumerate(slices):
            await in_flight.acquire()
            if probe_sensor:
                sent_at[probe_sensor] = time.monotonic()
            sends.append(asyncio.create_task(send(batch)))
            delay = t0 + (k + 1) * SLICE_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*sends)
        elapsed = time.monotonic() - t0
    stop.set()
    await floor_task
    try:  # probes the read model has not shown 60 s after the load ended count as missing
        await asyncio.wait_for(model_task, 60)
    except TimeoutError:
        pass
    await consumer.stop()
    await lookups.close()

    def pct(d: dict[str, float], q: float) -> float:
        lat = sorted((d[s] - sent_at[s]) * 1000 for s in d if s in sent_at)
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {"rate_asked": rate, "rate_achieved": published / elapsed, "probes": len(sent_at),
            "probes_in_read_model": len(seen_model),
            "publish_to_read_model_p50_ms": pct(seen_model, 0.5), "publish_to_read_model_p99_ms": pct(seen_model, 0.99),
            "floor_p50_ms": pct(seen_kafka, 0.5), "floor_p99_ms": pct(seen_kafka, 0.99)}


def restart_to_ready(names: list[str]) -> tuple[dict[str, float], dict[str, bool]]:
    """Per worker: seconds from SIGKILL to ready again, and whether its warm spare took over
    (each spare is waited for first, up to 180 s: the fleet as it runs, not just after `qi up`)."""
    out, promoted = {}, {}
    for name in names:
        try:
            spare = probe.wait_spares(RUN_DIR, [name], timeout_s=180)[name]
        except TimeoutError:
            spare = None
        victim = load_state(RUN_DIR).instances[name].pid
        os.kill(victim, signal.SIGKILL)
        out[name] = round(probe.wait_restarted(RUN_DIR, name, victim, timeout_s=180), 2)
        promoted[name] = spare is not None and load_state(RUN_DIR).instances[name].pid == spare
    return out, promoted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=5000, help="readings per second")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--log-events", type=int, default=1_000_000)
    ap.add_argument("--log-storage", choices=["durable", "memory"], default="durable",
                    help="the fleet's Kafka log (durable: the embedded default)")
    args = ap.parse_args()

    shutil.rmtree(RUN_DIR, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
    env.update({"QI_STACK_RUN_DIR": str(RUN_DIR), "QI_LOG_FORMAT": "json", "QI_STACK_LOG_STORAGE": args.log_storage})
    try:
        qi(env, "up", "--wait", "120")
        names = sorted(load_state(RUN_DIR).instances)
        probe.wait_ready(RUN_DIR, names, timeout_s=180)
        os.environ["QI_STACK_RUN_DIR"] = str(RUN_DIR)
        platform = Platform(Settings.from_env())
        lat = asyncio.run(latency(platform, args.rate, args.seconds))
        probe.wait_ready(RUN_DIR, names, timeout_s=180)
        restarts, promoted = restart_to_ready(names)
    finally:
        subprocess.run([sys.executable, "-m", "qi", "down", "--purge"], env=env, cwd=ROOT, capture_output=True,
                       timeout=300)
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    floor = log_restart.run("memory", args.log_events)
    durable = log_restart.run("durable", args.log_events)
    row = {**{k: (round(v, 1) if isinstance(v, float) else v) for k, v in lat.items()},
           "read_model_vs_floor_p99": round(lat["publish_to_read_model_p99_ms"] / lat["floor_p99_ms"], 1),
           "restart_to_ready_s": restarts, "restart_to_ready_max_s": max(restarts.values()),
           "restart_by_warm_spare": promoted,
           "log_restart_s": round(durable["log_restart_s"], 2), "log_restart_floor_s": round(floor["log_restart_s"], 2),
           "log_events": durable["events"]}
    report("platform", [row], params={**vars(args), "workers": names, "read_model": "redis sensor latest",
                                      "goals": {"p99_ms": 1000, "restart_to_ready_s": 5, "log_restart_s": 10},
                                      "median_restart_s": statistics.median(restarts.values())})


if __name__ == "__main__":
    main()
