"""The whole platform on this machine: publish-to-read-model latency, restart to ready, log restart.

In a stack of its own (``.qi/bench-platform``, durable log, deleted afterwards), ``qi up`` starts
every worker (validate, score, the three projectors, audit, bridge) under the supervisor. Then:

1. **publish_to_read_model**: readings are published to ``readings`` at a steady ``--rate``
   (default 5,000/s) for ``--seconds``, in 20 ms slices. Every 100 ms one of them is a probe on a
   sensor of its own; its latency is the time from handing it to the producer until the Redis
   read model (``qi worker project --sink redis``) shows it as that sensor's latest reading. The
   **floor** is measured on the same probes in the same run: the time until a bare aiokafka
   consumer in this process sees the record (Kafka's own publish-to-consume latency here).
   Alongside: the probe's score in the read model (readings -> score -> scores -> project-redis),
   the CPU of every process during the load (psutil: ours by role, the stack's services by program,
   the rest of the machine as "other"), the CPU until the read model caught up per second of load
   (``platform_cores_to_keep_up``: more than the machine's cores means CPU-bound by construction),
   and each runner worker's mean batch size and time from its /metrics.
2. **restart_to_ready_s** per worker: once its warm spare waits (docs/decisions/0074), SIGKILL it,
   time until the supervisor has restarted it and its ``/ready`` answers 200;
   ``restart_by_warm_spare`` says whether the spare took over (else it was a cold start).
3. **log_restart_s**: ``bench/log_restart.py``'s measurement (stack down/up of a log holding
   ``--log-events`` events, until the last record of every partition is readable again), with its
   memory-only floor.

    python -m bench.platform [--rate 5000] [--seconds 30] [--log-events 1000000] [--slice-ms 20] [--latency-only]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the stdlib's `platform`: its directory must not shadow it on sys.path.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import psutil
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


def _labels() -> dict[int, str]:
    """pid -> what it is: a fleet instance (or its warm spare), the supervisor, a stack service."""
    state = load_state(RUN_DIR)
    out: dict[int, str] = {}
    if state is not None:
        out[state.supervisor_pid] = "supervisor"
        for name, st in state.instances.items():
            if st.pid:
                out[st.pid] = name
            if st.standby_pid:
                out[st.standby_pid] = f"{name} (spare)"
    return out


def _cpu_times() -> dict[int, tuple[str, float]]:
    """CPU seconds (user+system) of every process on the machine, labelled: ours by role, the
    stack's services by program, everything else (other people's work on this machine) as 'other'."""
    labels = _labels()
    me = os.getpid()
    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
        try:
            t = proc.info["cpu_times"]
            if t is None:
                continue
            pid = proc.info["pid"]
            label = labels.get(pid)
            if label is None and pid == me:
                label = "bench (publisher, floor consumer, watcher)"
            if label is None:
                ours = str(RUN_DIR) in " ".join(proc.info["cmdline"] or [])
                if not ours:
                    try:
                        ours = proc.environ().get("QI_STACK_RUN_DIR") == str(RUN_DIR)
                    except (psutil.AccessDenied, psutil.ZombieProcess):
                        ours = False
                label = f"stack: {proc.info['name']}" if ours else "other (not this benchmark)"
            out[pid] = (label, t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def cpu_cores(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
              seconds: float) -> dict[str, float]:
    """Cores used per label between two snapshots (a process started in between counts from 0)."""
    used: dict[str, float] = defaultdict(float)
    for pid, (label, t1) in after.items():
        t0 = before.get(pid, (label, 0.0))[1]
        used[label] += max(t1 - t0, 0.0) / seconds
    return dict(sorted(((k, round(v, 2)) for k, v in used.items()), key=lambda kv: -kv[1]))


def batch_stats(names: list[str]) -> dict[str, dict[str, float]]:
    """Per runner worker, from its /metrics: batches, records and seconds of batch handling so far."""
    out = {}
    for name in names:
        try:
            m = probe.metrics(RUN_DIR, name)
        except probe.NoAnswer:
            continue
        if "qi_batch_seconds_count" not in m:
            continue
        out[name] = {"batches": probe.total(m, "qi_batch_seconds_count"),
                     "seconds": probe.total(m, "qi_batch_seconds_sum"),
                     "records": probe.total(m, "qi_batch_size_sum")}
    return out


def batch_delta(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Mean batch size and fetch-to-commit time per worker during the load."""
    out = {}
    for name, a in after.items():
        b = before.get(name, {"batches": 0, "seconds": 0, "records": 0})
        n = a["batches"] - b["batches"]
        if n > 0:
            out[name] = {"batches": int(n), "mean_records": round((a["records"] - b["records"]) / n),
                         "mean_batch_ms": round(1000 * (a["seconds"] - b["seconds"]) / n, 1)}
    return out


async def latency(platform: Platform, rate: int, seconds: float, slice_s: float = SLICE_S) -> dict:
    """Steady load with probes; per probe: publish->Redis read model, and publish->bare consumer."""
    from projections.redis_sink import Lookups
    from projections.registry import PROJECTIONS

    serde = await platform.serde()
    topic = platform.topics.topic("readings")
    sent_at: dict[str, float] = {}          # probe sensor -> monotonic time handed to the producer
    seen_kafka: dict[str, float] = {}
    seen_model: dict[str, float] = {}     # the probe's reading in the Redis read model
    seen_score: dict[str, float] = {}     # the probe's AnomalyScored in the Redis read model
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
        """Every 10 ms, one pipelined round trip asks which pending probes the read model shows:
        the reading (readings -> project-redis) and its score (readings -> score -> scores ->
        project-redis). One round trip, not two per probe: the watcher must not load Redis."""
        import redis.asyncio as aioredis

        r = aioredis.from_url(platform.endpoints().redis or "", decode_responses=True)
        try:
            while not stop.is_set() or len(seen_model) < len(sent_at) or len(seen_score) < len(sent_at):
                gen = await r.get(lookups.base + "current")
                pending = [(table, s, d) for table, d in (("sensor_latest", seen_model), ("sensor_score", seen_score))
                           for s in list(sent_at) if s not in d]
                if gen is not None and pending:
                    pipe = r.pipeline(transaction=False)
                    for table, s, _ in pending:
                        pipe.exists(f"{lookups.base}{gen}:{table}:bench-probe:{s}")
                    found = await pipe.execute()
                    now = time.monotonic()
                    for (_, s, d), hit in zip(pending, found):
                        if hit:
                            d[s] = now
                await asyncio.sleep(0.01)
        finally:
            await r.aclose()

    floor_task, model_task = asyncio.create_task(floor()), asyncio.create_task(watch_model())
    per_slice = max(1, round(rate * slice_s))
    n_slices = int(seconds / slice_s)
    probe_every = max(1, round(PROBE_EVERY_S / slice_s))
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

    names = sorted(load_state(RUN_DIR).instances)
    batches0 = await asyncio.to_thread(batch_stats, names)
    cpu0 = await asyncio.to_thread(_cpu_times)
    cpu_t0 = time.monotonic()
    async with platform.publisher(serde) as pub:
        t0 = time.monotonic()
        sends = []
        for k, (probe_sensor, batch) in enumerate(slices):
            await in_flight.acquire()
            if probe_sensor:
                sent_at[probe_sensor] = time.monotonic()
            sends.append(asyncio.create_task(send(batch)))
            delay = t0 + (k + 1) * slice_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*sends)
        elapsed = time.monotonic() - t0
    cpu1 = await asyncio.to_thread(_cpu_times)
    cpu = cpu_cores(cpu0, cpu1, time.monotonic() - cpu_t0)
    batches = batch_delta(batches0, await asyncio.to_thread(batch_stats, names))
    load = os.getloadavg()
    stop.set()
    await floor_task
    try:  # probes the read model has not shown 60 s after the load ended count as missing
        await asyncio.wait_for(model_task, 60)
    except TimeoutError:
        pass
    # CPU from the load's start until the read model showed every probe's score (the fleet caught
    # up), per second of load: the cores the platform needs to keep up with this rate
    demand = cpu_cores(cpu0, await asyncio.to_thread(_cpu_times), elapsed)
    await consumer.stop()
    await lookups.close()

    def pct(d: dict[str, float], q: float) -> float:
        lat = sorted((d[s] - sent_at[s]) * 1000 for s in d if s in sent_at)
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {"rate_asked": rate, "rate_achieved": published / elapsed, "probes": len(sent_at),
            "probes_in_read_model": len(seen_model),
            "publish_to_read_model_p50_ms": pct(seen_model, 0.5), "publish_to_read_model_p99_ms": pct(seen_model, 0.99),
            "floor_p50_ms": pct(seen_kafka, 0.5), "floor_p99_ms": pct(seen_kafka, 0.99),
            "score_in_read_model_p50_ms": pct(seen_score, 0.5), "score_in_read_model_p99_ms": pct(seen_score, 0.99),
            "loadavg_during_load": [round(x, 1) for x in load],
            "cpu_cores_total": round(sum(cpu.values()), 2), "cpu_cores": cpu, "batches_during_load": batches,
            "platform_cores_to_keep_up": round(sum(v for k, v in demand.items() if not k.startswith("other")), 2),
            "cpu_cores_until_caught_up": demand}


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
    ap.add_argument("--slice-ms", type=float, default=SLICE_S * 1000,
                    help="readings are handed to the producer in slices this far apart (the probe is the last "
                         "of its slice, stamped when handed over; the others waited up to one slice)")
    ap.add_argument("--latency-only", action="store_true",
                    help="measure publish_to_read_model only (no restarts, no log restart): for iterating")
    ap.add_argument("--restart-only", action="store_true",
                    help="measure restart_to_ready_s only, on an idle fleet (no load, no log restart)")
    args = ap.parse_args()

    shutil.rmtree(RUN_DIR, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
    env.update({"QI_STACK_RUN_DIR": str(RUN_DIR), "QI_LOG_FORMAT": "json", "QI_STACK_LOG_STORAGE": args.log_storage})
    try:
        qi(env, "up", "--wait", "120")
        names = sorted(load_state(RUN_DIR).instances)
        probe.wait_ready(RUN_DIR, names, timeout_s=180)
        os.environ["QI_STACK_RUN_DIR"] = str(RUN_DIR)
        if args.restart_only:
            restarts, promoted = restart_to_ready(names)
            report("platform", [{"restart_to_ready_s": restarts, "restart_to_ready_max_s": max(restarts.values()),
                                 "restart_by_warm_spare": promoted, "loadavg": os.getloadavg()}],
                   params={**vars(args), "workers": names})
            return
        platform = Platform(Settings.from_env())
        lat = asyncio.run(latency(platform, args.rate, args.seconds, args.slice_ms / 1000))
        if args.latency_only:
            detail = ("cpu_cores", "batches_during_load", "cpu_cores_until_caught_up")
            report("platform", [{k: v for k, v in lat.items() if k not in detail}],
                   params={**vars(args), "workers": names, **{k: lat[k] for k in detail}})
            print(json.dumps({k: lat[k] for k in detail}, indent=1))
            return
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
    print(f"\nCPU during the load ({lat['cpu_cores_total']:.2f} cores of {os.cpu_count()} in use, load average "
          f"{lat['loadavg_during_load']}):")
    for label, cores in lat["cpu_cores"].items():
        print(f"  {cores:5.2f}  {label}")
    print(f"\nCPU per second of load until the read model caught up (the platform, without 'other': "
          f"{lat['platform_cores_to_keep_up']:.2f} cores needed to keep up):")
    for label, cores in lat["cpu_cores_until_caught_up"].items():
        if cores >= 0.01:
            print(f"  {cores:5.2f}  {label}")
    print("\nbatches during the load (mean records, mean fetch-to-commit ms):")
    for name, b in lat["batches_during_load"].items():
        print(f"  {name:20} {b['batches']:6} batches  {b['mean_records']:6} records  {b['mean_batch_ms']:8.1f} ms")


if __name__ == "__main__":
    main()
