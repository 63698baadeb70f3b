"""The README's first command, as a new user runs it, then operated as an operator would.

One fresh stack in its own run directory, every worker a real process under `qi up`:
1. `qi demo` twice: the results are right and nothing doubles;
2. metrics: poison with known counts, then every worker's /metrics reports what is in the log
   (consumed per topic, produced, dead-lettered) and lag 0, and the audit tree holds every leaf;
3. supervision: readings flow from a simulated gateway over MQTT while EACH worker is SIGKILLed
   once; `qi ps` shows every restart, each worker becomes ready again, and the read models hold
   exactly the readings published;
4. logs: after `qi down`, no process of ours runs; no worker log contains a configured secret
   (a password in the Postgres DSN and the MQTT URL, the issuer and log private keys) and every
   line a worker logged is a JSON object naming the event and the worker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.reader import log_end_offsets
from events.topics import TopicNames
from qi.fleet import probe
from qi.stack import LocalStack
from tests.projections.harness import wait_until
from tests.qi.run import qi

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
PG_SECRET = "pg-canary-7f3a9c1e"
MQTT_SECRET = "mqtt-canary-52d0b8aa"
POISON = {"readings": 5, "certificates": 3}
FLOW_TWINS = ("twin-0", "twin-1", "twin-2")
FLOW_COUNT = 2400


@pytest.fixture
def fresh_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
    env.update({"QI_STACK_RUN_DIR": str(tmp_path / "run"), "QI_LOG_FORMAT": "json",
                "QI_RUNNER_SESSION_TIMEOUT_MS": "6000", "QI_VALIDATION_SESSION_TIMEOUT_S": "6",
                "QI_AUDIT_HEAD_EVERY_S": "2"})
    yield env
    qi(env, "down", "--purge", timeout=180)


def _fleet(env) -> dict:
    return json.loads((Path(env["QI_STACK_RUN_DIR"]) / "fleet.json").read_text())["instances"]


def _our_processes(run_dir: Path) -> list[psutil.Process]:
    mine = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            if p.info["environ"] and p.info["environ"].get("QI_STACK_RUN_DIR") == str(run_dir):
                mine.append(p)
        except psutil.Error:
            continue
    return mine


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, _, host = rest.rpartition("@")
    return f"{scheme}://{user or 'qi'}:{password}@{host}"


def _settle(run_dir: Path, names: list[str], bootstrap: str) -> dict[str, int]:
    """Every worker caught up with the log as it stands (its lag taken against these log ends or
    later ones), and the log unchanged meanwhile (outputs of outputs included)."""
    while True:
        ends = _partition_ends(bootstrap)
        wait_until(lambda: all(_quiet(run_dir, n, ends) for n in names), 180)
        if _partition_ends(bootstrap) == ends:
            return _per_topic(ends)


def _quiet(run_dir: Path, name: str, ends: dict[str, int]) -> bool:
    """Caught up with ``ends``, and nothing due on a timer: the audit worker signs a head
    QI_AUDIT_HEAD_EVERY_S after its first unsigned leaf, so the log grows while it has any."""
    if not probe.is_caught_up_with(run_dir, name, ends):
        return False
    return not name.startswith("audit") or probe.total(probe.metrics(run_dir, name), "qi_audit_unsigned_leaves") == 0


def _log_ends(bootstrap: str) -> dict[str, int]:
    """Records per topic of the platform (sum of the partitions' end offsets)."""
    return _per_topic(_partition_ends(bootstrap))


def _per_topic(ends: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for tp, end in ends.items():
        topic = tp.rsplit("/", 1)[0]
        out[topic] = out.get(topic, 0) + end
    return out


def _partition_ends(bootstrap: str) -> dict[str, int]:
    """``{"topic/partition": end offset}`` of every partition of the platform's topics."""
    async def go():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await c.start()
        try:
            topics = [t for t in await c.topics() if not t.startswith("__")]
            tps = [TopicPartition(t, p) for t in topics for p in c.partitions_for_topic(t) or ()]
            c.assign(tps)
            ends = await log_end_offsets(c, tps)  # not ListOffsets: Tansu answers it low (decision 0004)
        finally:
            await c.stop()
        return {f"{tp.topic}/{tp.partition}": end for tp, end in ends.items()}
    return asyncio.run(go())


def _publish_poison(bootstrap: str, topics: TopicNames) -> None:
    async def go():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await p.start()
        try:
            for family, n in POISON.items():
                for i in range(n):
                    await p.send_and_wait(topics.topic(family), b"\x00\x00\x00\x00\x63not avro at all",
                                          key=f"poison-{family}-{i}".encode())
        finally:
            await p.stop()
    asyncio.run(go())


def _check_metrics(run_dir: Path, names: list[str], bootstrap: str, topics: TopicNames,
                   before: dict[str, dict]) -> set[str]:
    """Every worker's /metrics against the log: the counts the workload put there (``before``: the
    metrics just before the poison was published). Returns the topics the audit worker reads."""
    ends = _log_ends(bootstrap)
    dead_total, audited = 0.0, set()
    for name in names:
        m = probe.metrics(run_dir, name)
        if name.startswith("bridge"):
            received = probe.total(m, "qi_bridge_received_total")
            produced, dead = probe.total(m, "qi_bridge_produced_total"), probe.total(m, "qi_bridge_dead_lettered_total")
            assert received >= 2 * 1200 and produced + dead == received, (name, received, produced, dead)
            assert probe.total(m, "qi_bridge_in_flight") == 0
            dead_total += dead
            continue
        if name.startswith("api"):  # the HTTP API consumes nothing; it has answered the probes
            assert probe.total(m, "qi_api_requests_total", endpoint="health") > 0, name
            continue
        consumed = {dict(k)["topic"]: v for k, v in m.get("qi_events_consumed_total", {}).items()}
        assert consumed, f"{name} reports nothing consumed"
        for topic, n in consumed.items():
            assert n == ends.get(topic, 0), f"{name} consumed {n} of {topic}, the log holds {ends.get(topic)}"
        lags = m.get("qi_consumer_lag", {})
        assert lags and all(v == 0 for v in lags.values()), (name, lags)
        for family, n in POISON.items():
            topic = topics.topic(family)
            if topic in consumed and not name.startswith("audit"):
                dead = probe.total(m, "qi_events_dead_lettered_total", topic=topic)
                assert dead - probe.total(before[name], "qi_events_dead_lettered_total", topic=topic) == n, (name, topic)
        dead_total += probe.total(m, "qi_events_dead_lettered_total")
        for output, n in ((topics.topic("scores"), "score"), (topics.topic("validations"), "validate")):
            if name == n:
                assert probe.total(m, "qi_events_produced_total", topic=output) == ends[output], (name, output)
        if name.startswith("audit"):
            audited = set(consumed)
            # every decodable record is a leaf; poison is dead-lettered, and its dead letter (original
            # bytes and position) is a leaf in turn, so it is still covered by the tree
            leaves = sum(consumed.values()) - probe.total(m, "qi_events_dead_lettered_total")
            assert probe.total(m, "qi_audit_tree_size") == leaves, "every audited record is one leaf"
            assert probe.total(m, "qi_events_dead_lettered_total") == sum(POISON.values())  # no other poison here
            assert probe.total(m, "qi_audit_seconds_since_signed_head") < 60
    assert dead_total == ends[topics.topic("deadletter")], "every dead letter in the log was counted once"
    return audited


def _kill_each_worker_while_readings_flow(env, run_dir: Path, names: list[str]) -> dict[str, float]:
    gateway = subprocess.Popen(
        [sys.executable, "-m", "qi", "gateway", "simulate", "--count", str(FLOW_COUNT), "--rate", "20",
         "--site", "plant9", "--twins", str(len(FLOW_TWINS)), "--sensors", "3", "--gateway-id", "ops"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    back_after: dict[str, float] = {}
    try:
        for name in names:
            victim = _fleet(env)[name]["pid"]
            os.kill(victim, signal.SIGKILL)
            back_after[name] = probe.wait_restarted(run_dir, name, victim, timeout_s=120)
        assert gateway.poll() is None, "the readings stopped flowing before every worker was killed once"
        out, err = gateway.communicate(timeout=300)
    finally:
        if gateway.poll() is None:
            gateway.kill()
    assert gateway.returncode == 0 and f"published {FLOW_COUNT}" in out, err
    return back_after


def _warehouse_count(env, table: str) -> int:
    twins = ", ".join(f"'{t}'" for t in FLOW_TWINS)
    res = qi(env, "sql", "--format", "json", f"SELECT count() AS n FROM {table} FINAL WHERE twin_id IN ({twins})")
    assert res.returncode == 0, res.stderr
    return int(json.loads(res.stdout)[0]["n"])


def _secrets(run_dir: Path) -> list[str]:
    """The configured secrets and private key material a log must never contain."""
    found = [PG_SECRET, MQTT_SECRET]
    pems = sorted(run_dir.rglob("*.ed25519.pem")) + sorted(run_dir.rglob("*.mldsa65.pem"))
    assert len(pems) >= 4, "the demo's issuer keys and the log's key pair"
    for pem in pems:
        text = pem.read_text()
        found += [line for line in text.splitlines() if line and not line.startswith("-----")]
        if pem.name.endswith(".ed25519.pem"):
            key = serialization.load_pem_private_key(text.encode(), None)
            assert isinstance(key, Ed25519PrivateKey)
            raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
            found += [raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]
    return found


def _check_logs(run_dir: Path, names: list[str]) -> None:
    secrets = _secrets(run_dir)
    logs = sorted((run_dir / "logs").glob("*.log"))
    workers = [run_dir / "logs" / f"{n}.log" for n in names]
    for path in logs:
        text = path.read_text(errors="replace")
        leaked = [s[:12] + "..." for s in secrets if s in text]
        assert not leaked, f"{path.name} contains secret material: {leaked}"
    for path in workers:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines, f"{path.name} is empty"
        for n, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"{path.name}:{n} is not JSON: {line[:200]}") from None
            assert isinstance(entry, dict) and "event" in entry, f"{path.name}:{n}: {line[:200]}"
            assert entry.get("worker"), f"{path.name}:{n} names no worker: {line[:200]}"


@pytest.mark.timeout(1500)
def test_up_demo_metrics_supervision_logs_and_down(fresh_env):
    env = fresh_env
    run_dir = Path(env["QI_STACK_RUN_DIR"])
    started = qi(env, "stack", "up")
    assert started.returncode == 0, started.stdout + started.stderr
    urls = LocalStack(run_dir).urls()
    env["QI_POSTGRES_DSN"] = _with_password(urls["postgres"], PG_SECRET)
    env["QI_MQTT_URL"] = _with_password(urls["mqtt"], MQTT_SECRET)

    up = qi(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    first = qi(env, "demo")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    out = first.stdout
    assert "DCC-DEMO-0004  INVALID" in out and "signature" in out
    assert "1200 of 1200 readings scored" in out
    assert "verified with the log's public keys only" in out

    second = qi(env, "demo")
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    # nothing doubled: the same events, the same ids, the same read-model counts
    counts = [line for line in out.splitlines() if line.startswith("  read model")]
    assert counts == [line for line in second.stdout.splitlines() if line.startswith("  read model")]

    # 2. metrics against the log, with a known number of poison records
    names = sorted(_fleet(env))
    bootstrap, topics = urls["kafka"], TopicNames()
    _settle(run_dir, names, bootstrap)
    before = {n: probe.metrics(run_dir, n) for n in names}
    _publish_poison(bootstrap, topics)
    _settle(run_dir, names, bootstrap)
    audited = _check_metrics(run_dir, names, bootstrap, topics, before)

    # 3. supervision: kill each worker once while readings flow
    back_after = _kill_each_worker_while_readings_flow(env, run_dir, names)
    assert set(back_after) == set(names)
    fleet = _fleet(env)
    assert all(fleet[n]["restarts"] == 1 for n in names), {n: fleet[n]["restarts"] for n in names}
    ps = qi(env, "ps")
    assert ps.returncode == 0, ps.stdout
    for n in names:
        row = next(line.split() for line in ps.stdout.splitlines() if line.startswith(n + " "))
        assert row[2] == "running" and row[4] == "1", row
    _settle(run_dir, names, bootstrap)
    assert _warehouse_count(env, "readings") == FLOW_COUNT
    assert _warehouse_count(env, "scores") == FLOW_COUNT
    ends = _log_ends(bootstrap)
    audit = probe.metrics(run_dir, "audit")
    poison = sum(POISON.values())
    assert probe.total(audit, "qi_audit_tree_size") == sum(ends[t] for t in audited) - poison, "a leaf lost or doubled"

    down = qi(env, "down", timeout=180)
    assert down.returncode == 0, down.stderr
    wait_until(lambda: not [p for p in _our_processes(run_dir) if p.status() != psutil.STATUS_ZOMBIE], 10)

    # 4. the logs
    _check_logs(run_dir, names)
