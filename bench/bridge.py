"""MQTT to Kafka through the bridge vs the same broker feeding a bare subscriber.

Same run, same broker, same messages (``qi gateway simulate``, a separate process,
JSON readings at QoS 1 over 200 sensors):

* floor: a bare paho subscriber (QoS 1, automatic acks) that only counts;
  messages/s from the first receipt to the last.
* ours: ``qi bridge mqtt`` (a separate process) with the example mapping;
  messages/s from the bridge's first receipt until it has acknowledged all of
  them to MQTT, i.e. after Kafka acknowledged every event (its /health, polled every 10 ms).
* latency at a fixed rate (default 2,000 msg/s for 10 s, a fresh bridge): per
  message, from the gateway's send time (the payload's ``ts``, stamped just before
  ``publish``) until Kafka acknowledged its event, as the bridge records it in its
  ``qi_bridge_source_to_ack_seconds`` histogram (same machine, same clock);
  p50/p99 are interpolated inside buckets as Prometheus' histogram_quantile does.

Rounds alternate floor and ours; the best round of each is reported. Uses
QI_KAFKA_BOOTSTRAP and QI_MQTT_URL when set, else starts the local stack in .qi/bench.

    python -m bench.bridge [--messages 20000] [--rounds 2] [--rate 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from bench._report import report  # noqa: E402
from qi.stack import LocalStack  # noqa: E402
from qi.stack.services import Mqtt  # noqa: E402
from streams.health import announced_url  # noqa: E402

EXAMPLE = ROOT / "connectors" / "mqtt" / "examples" / "plant.toml"


def gateway(env: dict, site: str, count: int, rate: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "qi", "gateway", "simulate", "--count", str(count), "--rate", str(rate),
         "--twins", "50", "--sensors", "4", "--site", site, "--gateway-id", f"gw-{site}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def floor_round(env: dict, url: str, n: int) -> float:
    site = f"floor-{uuid.uuid4().hex[:8]}"
    parts = urlsplit(url)
    state = {"n": 0, "first": None, "last": 0.0}
    done, subscribed = threading.Event(), threading.Event()

    def on_message(c, u, m):  # noqa: ANN001
        if state["first"] is None:
            state["first"] = time.time()
        state["n"] += 1
        if state["n"] >= n:
            state["last"] = time.time()
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-floor-{site}")
    c.on_message = on_message
    c.on_subscribe = lambda *a, **k: subscribed.set()
    c.on_connect = lambda cl, *a, **k: cl.subscribe(f"plants/{site}/#", qos=1)
    c.connect(parts.hostname, parts.port)
    c.loop_start()
    try:
        subscribed.wait(10)
        gw = gateway(env, site, n, 0)
        if not done.wait(300):
            raise RuntimeError(f"floor: only {state['n']} of {n} received")
        gw.wait(60)
        return n / (state["last"] - state["first"])
    finally:
        c.disconnect()
        c.loop_stop()


def health(run_dir: Path, instance: str) -> dict | None:
    u = announced_url(run_dir, instance)
    if not u:
        return None
    try:
        with urllib.request.urlopen(f"{u}/health", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


class Bridge:
    """``qi bridge mqtt`` in its own process, on its own topics and MQTT session."""

    def __init__(self, env: dict, run_dir: Path, workdir: Path) -> None:
        self.site = f"ours-{uuid.uuid4().hex[:8]}"
        self.prefix = f"bench-{self.site}."
        self.instance = f"bench-bridge-{self.site}"
        self.run_dir = run_dir
        config = workdir / f"{self.site}.toml"
        config.write_text(EXAMPLE.read_text().replace("plants/+/", f"plants/{self.site}/")
                          .replace('client_id = "qi-bridge-plant"', f'client_id = "bench-{self.site}"'))
        self.env = {**env, "QI_KAFKA_TOPIC_PREFIX": self.prefix, "QI_RUNNER_INSTANCE": self.instance,
                    "QI_STACK_RUN_DIR": str(run_dir), "QI_LOG_LEVEL": "warning"}
        self.proc = subprocess.Popen([sys.executable, "-m", "qi", "bridge", "mqtt", "--config", str(config)],
                                     cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (h := health(run_dir, self.instance)) or not h.get("connected"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("bridge did not start")
            time.sleep(0.1)

    def counters(self) -> tuple[int, int]:
        """(received, acked) from the bridge's /health."""
        h = health(self.run_dir, self.instance)
        return (int(h["received"]), int(h["acked"])) if h else (0, 0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def ours_round(env: dict, run_dir: Path, workdir: Path, n: int) -> float:
    b = Bridge(env, run_dir, workdir)
    try:
        gw = gateway(env, b.site, n, 0)
        deadline = time.monotonic() + 600
        first = None
        while True:
            received, acked = b.counters()
            now = time.time()
            if first is None and received > 0:
                first = now
            if acked >= n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"ours: {acked} of {n} acknowledged")
            time.sleep(0.01)
        gw.wait(60)
        return n / (now - first)
    finally:
        b.stop()


def latency_round(env: dict, run_dir: Path, workdir: Path, rate: float, seconds: float) -> dict[float, int]:
    """Run the gateway at ``rate`` through a fresh bridge; its source-to-ack histogram (le -> count)."""
    b = Bridge(env, run_dir, workdir)
    n = int(rate * seconds)
    try:
        gw = gateway(env, b.site, n, rate)
        deadline = time.monotonic() + seconds + 120
        while b.counters()[1] < n:
            if time.monotonic() > deadline:
                raise RuntimeError("latency run: not every message acknowledged")
            time.sleep(0.1)
        gw.wait(60)
        with urllib.request.urlopen(f"{announced_url(run_dir, b.instance)}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        b.stop()
    buckets: dict[float, int] = {}
    for line in text.splitlines():
        m = re.match(r'qi_bridge_source_to_ack_seconds_bucket\{le="([^"]+)".*\} ([0-9.e+]+)$', line)
        if m:
            buckets[float(m.group(1))] = int(float(m.group(2)))
    if buckets.get(float("inf"), 0) < n:
        raise RuntimeError(f"latency run: {buckets.get(float('inf'))} observations for {n} messages")
    return buckets


def quantile(buckets: dict[float, int], q: float) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank."""
    bounds = sorted(buckets)
    rank = q * buckets[bounds[-1]]
    prev_le, prev_count = 0.0, 0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1)
        prev_le, prev_count = le, count
    return prev_le


def main(args) -> None:
    bootstrap, mqtt_url = os.environ.get("QI_KAFKA_BOOTSTRAP"), os.environ.get("QI_MQTT_URL")
    stack = None
    broker = "external"
    if not (bootstrap and mqtt_url):
        stack = LocalStack(ROOT / ".qi" / "bench")
        urls = stack.up()
        bootstrap, mqtt_url = urls["kafka"], urls["mqtt"]
        broker = Mqtt().flavour()
    workdir = Path(tempfile.mkdtemp(prefix="qi-bench-bridge-"))
    run_dir = workdir / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
    env.update({"QI_KAFKA_BOOTSTRAP": bootstrap, "QI_MQTT_URL": mqtt_url})
    try:
        floor, ours = 0.0, 0.0
        for _ in range(args.rounds):
            floor = max(floor, floor_round(env, mqtt_url, args.messages))
            ours = max(ours, ours_round(env, run_dir, workdir, args.messages))
        buckets = latency_round(env, run_dir, workdir, args.rate, args.seconds)
        row = {"floor_per_s": round(floor), "ours_per_s": round(ours), "ratio": round(ours / floor, 3),
               "p50_ms": round(quantile(buckets, 0.50) * 1000, 2), "p99_ms": round(quantile(buckets, 0.99) * 1000, 2)}
        report("bridge", [row], params={**vars(args), "broker": broker, "latency_messages": buckets[float("inf")],
                                        "latency_over_50ms": buckets[float("inf")] - buckets[0.05]})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if stack is not None:
            stack.down()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=2000.0, help="messages/s of the latency run")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    main(ap.parse_args())
