"""What the demo shows: every worker's output for the demo world, read back from where it lives.

Each ``wait_*`` polls until the platform has produced what the demo's inputs
imply (or a deadline passes) and returns what it found; ``qi demo`` prints it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from events.reader import ConsumedRecord
from events.serde import Serde
from qi.demo import plant
from qi.demo.world import EXPECTED, TWINS
from qi.platform import Platform

DEMO_TWINS = {t for t, *_ in plant.SENSORS}


async def read_topic(platform: Platform, serde: Serde, family: str) -> list[ConsumedRecord]:
    async with platform.reader(serde, [family]) as reader:
        return [r for r in await reader.read_to_end(timeout_s=60) if r.decoded is not None]


async def poll(check, *, timeout_s: float, every_s: float = 1.0):  # noqa: ANN001, ANN201
    """Call ``check()`` until it returns something truthy, or the deadline; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result.done or time.monotonic() > deadline:
            return result
        await asyncio.sleep(every_s)


@dataclass
class Verdicts:
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)

    @property
    def done(self) -> bool:
        return set(EXPECTED) <= set(self.latest) and "DCC-DEMO-0002" in self.revoked


async def verdicts(platform: Platform, serde: Serde) -> Verdicts:
    out = Verdicts()
    for r in await read_topic(platform, serde, "validations"):
        rec = r.decoded.record
        if rec["certificate_id"] in EXPECTED:
            out.latest[rec["certificate_id"]] = rec
    for r in await read_topic(platform, serde, "certificates"):
        if r.decoded.event_type == "CertificateRevoked" and r.decoded.record["certificate_id"] in EXPECTED:
            out.revoked.add(r.decoded.record["certificate_id"])
    return out


@dataclass
class Scores:
    scored: int = 0
    expected: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    max_score: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def raised(self) -> Counter:
        return Counter((a["twin_id"], a["sensor_id"]) for a in self.alerts if a["state"] == "RAISED")

    @property
    def done(self) -> bool:
        return self.scored >= self.expected and len(self.raised) >= 2


async def scores(platform: Platform, serde: Serde) -> Scores:
    out = Scores(expected=plant.total())
    seen: set[str] = set()
    for r in await read_topic(platform, serde, "scores"):
        rec = r.decoded.record
        if rec["twin_id"] not in DEMO_TWINS:
            continue
        seen.add(str(rec["reading_event_id"]))
        key = (rec["twin_id"], rec["sensor_id"])
        out.max_score[key] = max(out.max_score.get(key, 0.0), rec["score"])
        if rec["is_anomaly"] and len(out.sample) < 3:
            out.sample.append(rec)
    out.scored = len(seen)
    alerts: dict[str, dict[str, Any]] = {}
    for r in await read_topic(platform, serde, "alerts"):
        if r.decoded.event_type == "AnomalyDetected" and r.decoded.record["twin_id"] in DEMO_TWINS:
            alerts[str(r.decoded.record["event_id"])] = r.decoded.record  # dedup redeliveries by id
    out.alerts = sorted(alerts.values(), key=lambda a: a["occurred_at"])
    return out


@dataclass
class Proof:
    document: dict[str, Any] | None = None
    verdict: str | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.document is not None


async def prove(platform: Platform, event_id: str) -> Proof:
    """The inclusion proof of one event, once a signed head covers it, verified with the public key only."""
    from events.signing import HybridPublicKey
    from streams.audit.prover import inclusion_document
    from streams.audit.verifier import VerificationError, verify_proof_document

    store = platform.audit_store()
    await store.start()
    try:
        entry = await store.entry_for_event(event_id)
        head = await store.latest_head()
        if entry is None or head is None or head.tree_size <= entry.leaf_index:
            return Proof()
        doc = await inclusion_document(store, event_id)
    finally:
        await store.close()
    a = platform.settings.audit
    try:
        verdict = verify_proof_document(doc, HybridPublicKey.load(platform.log_key_dir() / f"{a.key_name}.pub.json"))
    except VerificationError as e:
        return Proof(doc, None, str(e))
    return Proof(doc, str(verdict))


@dataclass
class ReadModels:
    postgres: dict[str, str] = field(default_factory=dict)       # certificate id -> status
    twins: int = 0
    redis: dict[str, str] = field(default_factory=dict)          # certificate id -> status
    redis_score: dict[str, Any] | None = None
    clickhouse: dict[str, int] = field(default_factory=dict)     # table -> demo rows (FINAL)
    problems: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        want = {"DCC-DEMO-0001": "valid", "DCC-DEMO-0002": "revoked", "DCC-DEMO-0003": "valid",
                "DCC-DEMO-0004": "invalid", "DCC-DEMO-0005": "invalid"}
        return (self.postgres == want and self.redis == want and self.twins == 4
                and self.clickhouse.get("readings") == plant.total()
                and self.clickhouse.get("scores") == plant.total())

    def lines(self) -> list[str]:
        statuses = Counter(self.postgres.values())
        return [
            f"postgres (registry): {self.twins} demo twins, {len(self.postgres)} certificates ("
            + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")",
            "redis (lookups): " + ", ".join(f"{c} {s}" for c, s in sorted(self.redis.items()))
            + (f"; gauge-0001/s1 latest score {self.redis_score['score']:.3f}" if self.redis_score else ""),
            "clickhouse (warehouse): " + ", ".join(f"{n} {t}" for t, n in sorted(self.clickhouse.items()))
            + " of the demo plant, counted FINAL",
        ]


async def read_models(platform: Platform) -> ReadModels:
    import psycopg

    from projections.clickhouse.query import run_query
    from projections.redis_sink import Lookups
    from projections.registry import PROJECTIONS

    out = ReadModels()
    ns = platform.settings.kafka.topic_prefix.lower().replace(".", "_").replace("-", "_")
    try:
        async with await psycopg.AsyncConnection.connect(platform.endpoints().postgres or "") as conn:
            rows = await (await conn.execute(
                f"SELECT certificate_id, status FROM {ns}registry.certificate_status "
                "WHERE certificate_id LIKE 'DCC-DEMO-%'")).fetchall()
            out.postgres = {c: s for c, s in rows}
            twins = [t for t, *_ in TWINS]
            out.twins = (await (await conn.execute(
                f"SELECT count(*) FROM {ns}registry.twins WHERE twin_id = ANY(%s)", (twins,))).fetchone())[0]
    except psycopg.Error as e:
        out.problems.append(f"postgres: {str(e).strip().splitlines()[0]}")
    lookups = Lookups(platform.endpoints().redis or "", PROJECTIONS["lookups"], namespace=ns)
    await lookups.start()
    try:
        now_us = int(time.time() * 1_000_000)
        for cid in EXPECTED:
            st = await lookups.certificate_status(cid, now_us)
            if st["certificate"] is not None:
                out.redis[cid] = st["status"]
        out.redis_score = (await lookups.sensor("gauge-0001", "s1"))["score"]
    except Exception as e:  # noqa: BLE001 - reported, and polled again
        out.problems.append(f"redis: {e}")
    finally:
        await lookups.close()
    twins_sql = ", ".join(f"'{t}'" for t in sorted(DEMO_TWINS))
    try:
        for table in ("readings", "scores"):
            res = await asyncio.to_thread(
                run_query, platform.endpoints().clickhouse or "", platform.settings.clickhouse.database,
                f"SELECT count() FROM {table} FINAL WHERE twin_id IN ({twins_sql})",
                run_dir=platform.stack.run_dir)
            out.clickhouse[table] = int(res.rows[0][0])
    except Exception as e:  # noqa: BLE001 - reported, and polled again
        out.problems.append(f"clickhouse: {e}")
    return out
