"""The certificate-validation worker as a faust-streaming app, built by :func:`build_app`.

* ``certificates`` topic and the internal ``recheck`` topic (same partition
  count) -> the agent that judges, with the lifecycle in the faust Table
  ``certs`` keyed by certificate id (changelog-backed, recovered after a
  crash), and the certificate index (id -> issued_at, status) that
  supersession checks read across partitions, written to the GlobalTable
  ``index`` (its changelog is the index topic). Outputs: CertificateValidated,
  CertificateExpiring, DeadLetter.
* issuer keys, twins and the index are read by every worker in full by a
  :class:`~streams.validation.replica.FactReplica` (a GlobalTable written by an
  agent is not replicated to the group's other workers: faust-streaming #283,
  reproduced here). The group's agents on the issuers and twins topics only
  dead-letter poison, once per record.
* a timer walks the local ``certs`` partitions every ``recheck_interval_s`` and
  sends a recheck message to the certificate's own partition when a pending
  certificate's missing fact arrived, its pending bound passed, or its expiry
  alert is due. Table writes happen only in the agent (faust refuses them
  outside a stream), so the timer only reads.

Tables hold JSON bytes under raw bytes keys with explicit changelog topics
(faust derives the JSON serializer from the types otherwise, and its recovery
of bytes keys fails). faust commits input offsets only after its producer
flushed (outputs and changelog writes): at-least-once; outputs carry event ids
derived from their input and redelivered inputs re-emit the stored verdict.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.types import TP
import structlog

from events.publisher import OutgoingRecord
from events.reader import ConsumedRecord
from events.serde import Serde
from events.topics import TopicNames
from qi.config import ValidationSettings
from streams.membership import MemberFile, consumer_member
from streams.metrics import RunnerMetrics
from streams.validation.checks import Policy
from streams.validation.facts import CertState
from streams.validation.judge import Judge, JudgeConfig, Poisoned, Tables
from streams.validation.progress import InputProgress
from streams.validation.replica import FactReplica, IndexView
from streams.validation.schedule import Schedule

log = structlog.get_logger(__name__)
RECHECK = b"recheck"
PRODUCER_MAX_BATCH_BYTES = 1_000_000   # per partition and request; faust's default 16 KiB held ~10 lifecycle records
PRODUCER_BUFFER_MESSAGES = 10_000     # changelog writes queued before the stream waits (faust's default: 100)


@dataclass(frozen=True)
class ValidationTopology:
    """Names and partition counts of everything the app reads and writes."""

    app_id: str
    certificates: str
    issuers: str
    twins: str
    recheck: str
    cert_partitions: int
    issuer_partitions: int
    twin_partitions: int

    def changelogs(self) -> dict[str, int]:
        """The tables' changelog topics, as faust names them, with the partitions they need."""
        return {
            f"{self.app_id}-certs-changelog": self.cert_partitions,
            f"{self.app_id}-index-changelog": self.cert_partitions,
            f"{self.app_id}-progress-changelog": self.cert_partitions,
        }

    def internal_topics(self) -> dict[str, int]:
        return {self.recheck: self.cert_partitions, **self.changelogs()}


def topology(topics: TopicNames, partitions_for: Any, client_id: str, topic_prefix: str) -> ValidationTopology:
    app_id = f"{topic_prefix}{client_id}-validate".replace("/", "-")
    return ValidationTopology(
        app_id=app_id,
        certificates=topics.topic("certificates"), issuers=topics.topic("issuers"), twins=topics.topic("twins"),
        recheck=f"{app_id}-recheck",
        cert_partitions=partitions_for("certificates"), issuer_partitions=partitions_for("issuers"),
        twin_partitions=partitions_for("twins"),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _consumed(msg: Any) -> ConsumedRecord:
    return ConsumedRecord(msg.topic, msg.partition, msg.offset, int((msg.timestamp or 0) * 1000),
                          msg.key, msg.value if msg.value is not None else b"", None, None)


@dataclass(frozen=True)
class ValidationApp:
    """The worker's faust app and the replica of the facts it judges by: a warm spare reads the
    facts (``facts.prefetch()``) before it waits for its promotion (docs/decisions/0077)."""
    app: faust.App
    facts: FactReplica


def build_app(*, bootstrap: str, serde: Serde, topics: TopicNames, topo: ValidationTopology,
              settings: ValidationSettings, data_dir: Path, health_server: Any = None,
              ready_max_lag: int = 1000, member_file: MemberFile | None = None) -> ValidationApp:
    """A fresh faust app for one worker process (no module-level app), with its fact replica.

    ``health_server(health_fn, registries)`` (optional) returns a started-later
    :class:`~streams.health.HealthServer`; it is served on the app's loop with the
    app's metrics (the same counters and lag gauges as the batch workers).
    ``member_file`` (a supervised instance): where its group member id is kept for the next
    process of the instance to evict (streams.membership, docs/decisions/0073).
    """
    metrics = RunnerMetrics(worker="validate")
    done: dict[tuple[str, int], int] = {}  # next offset to process per input partition
    inputs = {topo.certificates, topo.issuers, topo.twins}
    dead_topic = topics.topic("deadletter")
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        topo.app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(data_dir),
        autodiscover=False,
        web_enabled=False,
        web_port=settings.web_port or free_port(),
        web_host="127.0.0.1",
        topic_allow_declare=False,       # every topic is created beforehand with the right partitions
        topic_disable_leader=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=max(settings.session_timeout_s, 10.0),
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        producer_max_request_size=PRODUCER_MAX_BATCH_BYTES + 65536,
        logging_config=None,
    )

    def raw_topic(name: str, partitions: int | None = None) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                         partitions=partitions, internal=False)

    raw = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def table(factory: Any, name: str, partitions: int) -> Any:
        changelog = app.topic(f"{topo.app_id}-{name}-changelog", schema=raw, partitions=partitions,
                              compacting=True, deleting=False, acks=False, internal=True)
        t = factory(name, default=None, partitions=partitions, schema=raw, changelog_topic=changelog)
        t.key_serializer = t.value_serializer = "raw"  # faust derives "json" from the types otherwise
        return t

    app.producer.buffer.max_messages = PRODUCER_BUFFER_MESSAGES
    index_table = table(app.GlobalTable, "index", topo.cert_partitions)
    replica = FactReplica(bootstrap=bootstrap, issuers_topic=topo.issuers, twins_topic=topo.twins,
                          index_topic=f"{topo.app_id}-index-changelog", client_id=topo.app_id)
    tables = Tables(
        issuers=replica.issuers,
        twins=replica.twins,
        index=IndexView(index_table, replica.index),
        certs=table(app.Table, "certs", topo.cert_partitions),
    )
    progress = InputProgress(table(app.Table, "progress", topo.cert_partitions))
    judge = Judge(serde, topics, tables, JudgeConfig(
        policy=Policy(max_validity=timedelta(days=settings.max_validity_days)),
        pending_timeout=timedelta(seconds=settings.pending_timeout_s),
        expiring_lead=timedelta(seconds=settings.expiring_lead_s),
    ))
    replica.bind(judge)
    schedule = Schedule(timedelta(seconds=settings.expiring_lead_s))
    outputs: dict[str, faust.TopicT] = {}
    recheck_topic = raw_topic(topo.recheck, topo.cert_partitions)

    async def send(records: list[OutgoingRecord]) -> None:
        for r in records:
            t = outputs.get(r.topic)
            if t is None:
                t = outputs[r.topic] = raw_topic(r.topic)
            # Handed to the producer now (flushed before offsets commit). Not send_soon: its buffer
            # was seen stuck "full" for good after a SIGKILL-and-rebalance on the embedded broker.
            await t.send(key=r.key, value=r.value)
            metrics.count_produced(r.topic)

    @app.task
    async def follow_facts() -> None:
        while True:  # a broker hiccup must not stop the replica (nor crash the app)
            try:
                await replica.start()
                await replica.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("validation.facts_failed")
                await asyncio.sleep(1.0)
            finally:
                await replica.close()

    async def dead_letter_poison(stream: Any, family: str) -> None:
        """The group's agents for the fact topics only dead-letter poison (once per record);
        the facts themselves are folded by every worker's replica."""
        async for event in stream.events():
            rec = _consumed(event.message)
            metrics.count_consumed(rec.topic, 1)
            try:
                await judge.decode(rec, family)
            except Poisoned as p:
                await send([judge.dead_letter(rec, p.kind, p.message)])
                metrics.count_dead(rec.topic)
            done[(rec.topic, rec.partition)] = rec.offset + 1

    @app.agent(raw_topic(topo.issuers, topo.issuer_partitions), name="issuers")
    async def on_issuers(stream: Any) -> None:
        await dead_letter_poison(stream, "issuers")

    @app.agent(raw_topic(topo.twins, topo.twin_partitions), name="twins")
    async def on_twins(stream: Any) -> None:
        await dead_letter_poison(stream, "twins")

    certificate_channel = app.topic(topo.certificates, topo.recheck, key_type=bytes, value_type=bytes,
                                    key_serializer="raw", value_serializer="raw")

    # certificate partition -> the rebalance in which the agent last admitted a record of it /
    # in which its start was checked (a partition nothing arrived from since is checked once)
    admitted: dict[int, int] = {}
    checked: dict[int, int] = {}

    @app.agent(certificate_channel, name="certificates")
    async def on_certificates(stream: Any) -> None:
        await replica.ready.wait()  # never judge against a trust registry older than the log
        async for event in stream.events():
            msg = event.message
            if msg.topic == topo.certificates:
                admitted[msg.partition] = app.rebalancing_count
                if progress.position(msg.partition) is None:
                    start = await group_start(msg.partition)
                    if start is not None:
                        progress.seed(msg.partition, start)
                judge_it, rewind_to = progress.admit(msg.partition, msg.offset)
                if rewind_to is not None:
                    await app.consumer.seek(TP(msg.topic, msg.partition), rewind_to)
                if not judge_it:
                    continue
            metrics.count_consumed(msg.topic, 1)
            try:
                if msg.topic == topo.recheck:
                    out = await judge.recheck(msg.key.decode())
                else:
                    out = await judge.on_certificate(_consumed(msg))
                if msg.key is not None:
                    raw = tables.certs.get(msg.key)
                    schedule.note(msg.key, CertState.from_bytes(raw) if raw is not None else None)
            except Exception as e:  # noqa: BLE001 - poison never kills the worker
                log.exception("validation.processing_error", topic=msg.topic, offset=msg.offset)
                if msg.topic == topo.recheck:
                    continue
                out = [judge.dead_letter(_consumed(msg), "PROCESSING_ERROR", repr(e))]
            await send(out)
            metrics.count_dead(msg.topic, sum(r.topic == dead_topic for r in out))
            done[(msg.topic, msg.partition)] = msg.offset + 1
            if msg.topic == topo.certificates:
                progress.done(msg.partition, msg.offset)

    @app.timer(interval=settings.recheck_interval_s)
    async def recheck_due() -> None:
        if not replica.ready.is_set():
            return
        now = datetime.now(UTC)
        active = frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topo.certificates)
        try:
            if active != schedule.assignment:
                schedule.rebuild(active, list(tables.certs.items()))
            keys = set(schedule.pending) | set(schedule.due_expiries(now.timestamp()))
            for key in keys:
                raw = tables.certs.get(key)
                state = CertState.from_bytes(raw) if raw is not None else None
                if state is None or state.partition not in active:
                    schedule.pending.discard(key)
                elif judge.due(state, now):
                    await recheck_topic.send(key=key, value=RECHECK, partition=state.partition)
        except Exception:  # noqa: BLE001 - a timer that raises would stop the app
            log.exception("validation.recheck_failed")

    def group_member() -> tuple[str, int] | None:
        try:
            return consumer_member(app.consumer._thread._ensure_consumer())  # faust reads it so too
        except (AttributeError, AssertionError):
            return None

    async def group_start(partition: int) -> int | None:
        """The group's committed offset of a certificate partition (0 if none): where a partition
        this app has no position for must start (faust was seen starting a first run past it)."""
        try:
            thread = app.consumer._thread  # faust's consumer thread owns the aiokafka consumer
            committed = await thread.call_thread(thread._ensure_consumer().committed,
                                                 TopicPartition(topo.certificates, partition))
            return committed or 0
        except Exception:  # noqa: BLE001 - without it the guard still catches later gaps
            log.warning("validation.group_start_unknown", partition=partition, exc_info=True)
            return None

    async def start_of(partition: int) -> int | None:
        """Where the reading of a certificate partition starts now: the group's committed offset
        or the consumer's fetch position, whichever is further."""
        committed = await group_start(partition)
        try:
            position = await app.consumer.position(TP(topo.certificates, partition))
        except Exception:  # noqa: BLE001 - the committed offset alone still catches a restart's gap
            position = None
        known = [o for o in (committed, position) if o is not None]
        return max(known) if known else None

    @app.timer(interval=0.5)
    async def repeat_rewinds() -> None:
        """Each certificate partition's start is checked once per assignment, after recovery; a
        rewind over an input gap is repeated until its record comes back (0015)."""
        try:
            assigned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topo.certificates}
            for partition in sorted(assigned):
                now = app.rebalancing_count
                if app.rebalancing or checked.get(partition) == now or admitted.get(partition) == now:
                    continue  # a record that arrives is checked by `admit`
                start = await start_of(partition)
                checked[partition] = now
                if start is None or admitted.get(partition) == now or app.rebalancing_count != now:
                    continue  # a record arrived meanwhile (or a rebalance began): no longer a start
                rewind_to = progress.check_start(partition, start)
                if rewind_to is not None:
                    await app.consumer.seek(TP(topo.certificates, partition), rewind_to)
            for partition, offset in progress.due(assigned):
                log.warning("validation.input_gap_rewind_again", partition=partition, offset=offset)
                await app.consumer.seek(TP(topo.certificates, partition), offset)
        except Exception:  # noqa: BLE001 - a timer that raises would stop the app
            log.exception("validation.rewind_failed")

    @app.timer(interval=1.0)
    async def keep_member_id() -> None:
        member = group_member()
        if member_file is not None and member is not None:
            member_file.save(*member)

    # /ready waits for the first lag figure of every certificate partition, and faust starts timers
    # only after table recovery: every 2 s made a promoted spare wait ~2 s more for it (0077)
    @app.timer(interval=0.5)
    async def refresh_lag() -> None:
        """Records between what this worker processed and the log end, per assigned input partition."""
        try:
            tps = [tp for tp in app.assignor.assigned_actives() if tp.topic in inputs]
            metrics.forget_partitions([k for k in metrics.lag if k not in {(tp.topic, tp.partition) for tp in tps}])
            for tp in tps:
                at = done.get((tp.topic, tp.partition))
                if at is None:
                    at = await app.consumer.position(tp)
                # the last fetch answer's high watermark, not faust's `highwaters()`: that asks
                # ListOffsets, which the embedded broker answers with the last batch's base offset
                # + 1 (decision 0004), so a worker said lag 0 with its last batch unjudged
                hw = app.consumer.highwater(tp)
                if hw is not None and at is not None:
                    metrics.set_lag(tp.topic, tp.partition, max(hw - at, 0), end=hw)
        except Exception:  # noqa: BLE001 - a timer that raises would stop the app
            log.debug("validation.lag_unknown", exc_info=True)

    if health_server is not None:
        def health() -> dict[str, object]:
            assigned = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topo.certificates)
            lag = metrics.total_lag
            reason = None
            if group_member() is None or app.rebalancing:
                reason = "joining the consumer group"
            elif not replica.ready.is_set():
                reason = "catching up with issuers and twins"
            elif not {(topo.certificates, p) for p in assigned} <= set(metrics.lag):
                reason = "no fetch answered yet on every certificate partition (log end unknown)"
            elif lag > ready_max_lag:
                reason = f"{lag} records behind (bound {ready_max_lag})"
            return {"worker": "validate", "ready": reason is None, "reason": reason, "lag": lag,
                    "certificate_partitions": assigned, "issuers": len(replica.issuers),
                    "twins": len(replica.twins), "log_ends_seen": metrics.ends_seen()}

        server = health_server(health, [metrics.registry])

        @app.task
        async def serve_health() -> None:
            await server.start()
    return ValidationApp(app, replica)
