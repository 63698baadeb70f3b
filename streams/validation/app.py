"""The certificate-validation worker as a faust-streaming app, built by :func:`build_app`.

Three agents and a timer, over tables of JSON bytes under raw (bytes) keys
(faust's default JSON key serializer breaks changelog recovery of bytes keys):

* ``issuers`` topic -> GlobalTable ``issuers`` (replicated to every worker);
* ``twins`` topic -> GlobalTable ``twins``;
* ``certificates`` topic and the internal ``recheck`` topic (same partition
  count) -> Table ``certs`` keyed by certificate id, plus the GlobalTable
  ``index`` (certificate id -> issued_at, status) that supersession checks read
  across partitions. Outputs: CertificateValidated, CertificateExpiring,
  DeadLetter.
* a timer that walks the local ``certs`` partitions every
  ``recheck_interval_s`` and sends a recheck message to the certificate's own
  partition when a pending certificate's missing fact arrived, its pending
  bound passed, or its expiry alert is due. Table writes happen only in the
  agent (faust refuses them outside a stream), so the timer only reads.

faust commits input offsets only after its producer flushed (outputs and
changelog writes), so processing is at-least-once; outputs carry event ids
derived from their input, and redelivered inputs re-emit the stored verdict.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
import structlog

from events.publisher import OutgoingRecord
from events.reader import ConsumedRecord
from events.serde import Serde
from events.topics import TopicNames
from qi.config import ValidationSettings
from streams.validation.checks import Policy
from streams.validation.facts import CertState
from streams.validation.judge import Judge, JudgeConfig, Tables

log = structlog.get_logger(__name__)
RECHECK = b"recheck"


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
            f"{self.app_id}-issuers-changelog": self.issuer_partitions,
            f"{self.app_id}-twins-changelog": self.twin_partitions,
            f"{self.app_id}-index-changelog": self.cert_partitions,
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


def build_app(*, bootstrap: str, serde: Serde, topics: TopicNames, topo: ValidationTopology,
              settings: ValidationSettings, data_dir: Path) -> faust.App:
    """A fresh faust app for one worker process (no module-level app)."""
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
        logging_config=None,
    )

    def raw_topic(name: str, partitions: int | None = None) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                         partitions=partitions, internal=False)

    raw = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def table(factory: Any, name: str, partitions: int, *, synchronize_all_active_partitions: bool = False) -> Any:
        changelog = app.topic(f"{topo.app_id}-{name}-changelog", schema=raw, partitions=partitions,
                              compacting=True, deleting=False, acks=False, internal=True)
        t = factory(name, default=None, partitions=partitions, schema=raw, changelog_topic=changelog,
                    **({"synchronize_all_active_partitions": True} if synchronize_all_active_partitions else {}))
        t.key_serializer = t.value_serializer = "raw"  # faust derives "json" from the types otherwise
        return t

    tables = Tables(
        issuers=table(app.GlobalTable, "issuers", topo.issuer_partitions, synchronize_all_active_partitions=True),
        twins=table(app.GlobalTable, "twins", topo.twin_partitions, synchronize_all_active_partitions=True),
        index=table(app.GlobalTable, "index", topo.cert_partitions, synchronize_all_active_partitions=True),
        certs=table(app.Table, "certs", topo.cert_partitions),
    )
    judge = Judge(serde, topics, tables, JudgeConfig(
        policy=Policy(max_validity=timedelta(days=settings.max_validity_days)),
        pending_timeout=timedelta(seconds=settings.pending_timeout_s),
        expiring_lead=timedelta(seconds=settings.expiring_lead_s),
    ))
    outputs: dict[str, faust.TopicT] = {}
    recheck_topic = raw_topic(topo.recheck, topo.cert_partitions)

    async def send(records: list[OutgoingRecord]) -> None:
        for r in records:
            t = outputs.get(r.topic)
            if t is None:
                t = outputs[r.topic] = raw_topic(r.topic)
            await t.send(key=r.key, value=r.value)

    @app.agent(raw_topic(topo.issuers, topo.issuer_partitions), name="issuers")
    async def on_issuers(stream: Any) -> None:
        async for event in stream.events():
            await send(await judge.on_issuer(_consumed(event.message)))

    @app.agent(raw_topic(topo.twins, topo.twin_partitions), name="twins")
    async def on_twins(stream: Any) -> None:
        async for event in stream.events():
            await send(await judge.on_twin(_consumed(event.message)))

    certificate_channel = app.topic(topo.certificates, topo.recheck, key_type=bytes, value_type=bytes,
                                    key_serializer="raw", value_serializer="raw")

    @app.agent(certificate_channel, name="certificates")
    async def on_certificates(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                if msg.topic == topo.recheck:
                    out = await judge.recheck(msg.key.decode())
                else:
                    out = await judge.on_certificate(_consumed(msg))
            except Exception as e:  # noqa: BLE001 - poison never kills the worker
                log.exception("validation.processing_error", topic=msg.topic, offset=msg.offset)
                if msg.topic == topo.recheck:
                    continue
                out = [judge.dead_letter(_consumed(msg), "PROCESSING_ERROR", repr(e))]
            await send(out)

    @app.timer(interval=settings.recheck_interval_s)
    async def recheck_due() -> None:
        now = datetime.now(UTC)
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topo.certificates}
        for key, raw in list(tables.certs.items()):
            if raw is None:
                continue
            state = CertState.from_bytes(raw)
            if state.partition in active and judge.due(state, now):
                await recheck_topic.send(key=key, value=RECHECK, partition=state.partition)

    return app
