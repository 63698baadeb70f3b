"""Certificate validation as state transitions over plain mappings.

:class:`Judge` decodes one consumed record, folds it into the state it owns and
returns the records to produce. It knows nothing of faust: the worker
(:mod:`streams.validation.app`) hands it the faust tables, tests hand it dicts.

Tables (all values JSON bytes, all keys UTF-8 bytes):

``issuers``  issuer_id -> :class:`Issuer` (GlobalTable)
``twins``    twin_id -> :class:`Twin` (GlobalTable)
``index``    certificate_id -> :class:`CertIndexEntry` (GlobalTable)
``certs``    certificate_id -> :class:`CertState` (Table, partitioned like the certificates topic)

Pending rule: an event whose check needs a fact not known yet (issuer, key,
twin, superseding certificate) gets no verdict; it is stored in its
certificate's ``pending`` list (later events of that certificate queue behind
it). :meth:`Judge.recheck` evaluates the queue again; the worker calls it as
soon as the missing fact is in the tables, or when ``pending_timeout`` has
passed, and then the missing checks FAIL ("... unknown after N s").
"""

from __future__ import annotations

import functools
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import structlog

from events.errors import DecodeError, EncodeError, PoisonKind
from events.models import (
    CertificateIssued,
    CertificateRevoked,
    CertificateSuperseded,
    CheckOutcome,
    IssuerKeyRegistered,
    IssuerKeyRevoked,
    TwinDecommissioned,
    TwinRegistered,
)
from events.publisher import OutgoingRecord
from events.reader import ConsumedRecord
from events.serde import Serde
from events.topics import TopicNames
from streams.deadletter import dead_letter_record
from streams.ids import derived_id
from streams.validation.checks import (
    Evaluation,
    Policy,
    expiring_due,
    has_non_finite,
    validate_issued,
    validate_revoked,
    validate_superseded,
)
from streams.validation.facts import (
    CertIndexEntry,
    CertState,
    Issuer,
    Twin,
    apply_issuer_event,
    apply_twin_event,
)

log = structlog.get_logger(__name__)
VALIDATOR_VERSION = "qi-validate/1"
WORKER = "validate"
Table = MutableMapping[bytes, bytes]
_CERT_EVENTS = (CertificateIssued, CertificateRevoked, CertificateSuperseded)


class Poisoned(Exception):
    def __init__(self, kind: PoisonKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Tables:
    issuers: Table
    twins: Table
    index: Table
    certs: Table


@dataclass
class JudgeConfig:
    policy: Policy = field(default_factory=Policy)
    pending_timeout: timedelta = timedelta(hours=1)
    expiring_lead: timedelta = timedelta(days=30)


@functools.lru_cache(maxsize=4096)
def _parse_fact(kind: type, raw: bytes) -> Any:
    return kind.from_bytes(raw)


def _get(table: Table, key: str, kind: Any) -> Any:
    raw = table.get(key.encode())
    if raw is None:
        return None
    if kind is CertState:  # mutable: always a fresh copy
        return kind.from_bytes(raw)
    return _parse_fact(kind, bytes(raw))  # issuers, twins, index entries are immutable


class Judge:
    def __init__(self, serde: Serde, topics: TopicNames, tables: Tables, config: JudgeConfig) -> None:
        self.serde = serde
        self.topics = topics
        self.t = tables
        self.config = config

    # -- decoding ---------------------------------------------------------------------------

    async def decode(self, rec: ConsumedRecord, family: str) -> Any:
        """The typed event of ``rec``; raises :class:`Poisoned` with the dead-letter reason."""
        try:
            decoded = await self.serde.decode_resolving(rec.value)
        except DecodeError as e:
            raise Poisoned(e.kind, str(e)) from None
        except Exception as e:  # noqa: BLE001 - registry unreachable etc.: still poison for this record
            raise Poisoned("UNKNOWN_SCHEMA", f"cannot resolve writer schema: {e!r}") from None
        try:
            event = decoded.to_event()
        except KeyError:
            raise Poisoned("UNKNOWN_SCHEMA", f"event type {decoded.event_type!r} unknown to this worker") from None
        except (pydantic.ValidationError, ValueError) as e:
            raise Poisoned("VALIDATION_FAILED", f"{decoded.event_type} fails validation: {e}"[:1500]) from None
        if event.TOPIC_FAMILY != family:
            raise Poisoned("VALIDATION_FAILED", f"{decoded.event_type} does not belong on the {family} topic")
        if rec.key is None:
            raise Poisoned("VALIDATION_FAILED", f"{decoded.event_type} without a key")
        try:
            key = rec.key.decode()
        except UnicodeDecodeError:
            raise Poisoned("VALIDATION_FAILED", "key is not UTF-8") from None
        if key != event.key():
            raise Poisoned("VALIDATION_FAILED", f"key {key!r} is not the aggregate id {event.key()!r}")
        return event

    def dead_letter(self, rec: ConsumedRecord, kind: PoisonKind, message: str) -> OutgoingRecord:
        return dead_letter_record(self.serde, self.topics, rec, kind, message, WORKER)

    # -- facts ------------------------------------------------------------------------------

    async def on_issuer(self, rec: ConsumedRecord, *, dead_letters: bool = True) -> list[OutgoingRecord]:
        """Fold an issuers-topic record into ``issuers``; poison becomes a dead letter (or, with
        ``dead_letters=False``, is skipped: a fact replica leaves that to the group's agent)."""
        try:
            event = await self.decode(rec, "issuers")
        except Poisoned as p:
            return [self.dead_letter(rec, p.kind, p.message)] if dead_letters else []
        assert isinstance(event, IssuerKeyRegistered | IssuerKeyRevoked)
        new = apply_issuer_event(_get(self.t.issuers, event.issuer_id, Issuer), event)
        if new is not None:
            self.t.issuers[event.issuer_id.encode()] = new.to_bytes()
        return []

    async def on_twin(self, rec: ConsumedRecord, *, dead_letters: bool = True) -> list[OutgoingRecord]:
        try:
            event = await self.decode(rec, "twins")
        except Poisoned as p:
            return [self.dead_letter(rec, p.kind, p.message)] if dead_letters else []
        if isinstance(event, TwinRegistered | TwinDecommissioned):
            new = apply_twin_event(_get(self.t.twins, event.twin_id, Twin), event)
            if new is not None:
                self.t.twins[event.twin_id.encode()] = new.to_bytes()
        return []

    def fact_known(self, missing: str) -> bool:
        kind, _, name = missing.partition(":")
        if kind == "issuer":
            return self.t.issuers.get(name.encode()) is not None
        if kind == "key":
            issuer_id, _, key_id = name.partition("/")
            issuer = _get(self.t.issuers, issuer_id, Issuer)
            return issuer is not None and key_id in issuer.keys
        if kind == "twin":
            return self.t.twins.get(name.encode()) is not None
        if kind == "certificate":
            entry = _get(self.t.index, name, CertIndexEntry)
            return entry is not None and entry.status != "PENDING"
        return False

    # -- certificates -----------------------------------------------------------------------

    async def on_certificate(self, rec: ConsumedRecord, now: datetime | None = None) -> list[OutgoingRecord]:
        now = now or datetime.now(UTC)
        try:
            event = await self.decode(rec, "certificates")
        except Poisoned as p:
            return [self.dead_letter(rec, p.kind, p.message)]
        cid = event.certificate_id
        state = _get(self.t.certs, cid, CertState)
        eid = str(event.event_id)
        if state is not None and eid in state.judged:  # redelivery: the same outputs again
            return [self._validated_record(cid, bytes.fromhex(state.judged[eid]), event.event_id)]
        if state is not None and any(p["event_id"] == eid for p in state.pending):
            return []
        if state is not None and state.pending:  # queue behind the certificate's pending events
            state.pending.append(self._pending_entry(rec, eid, now, ["(queued)"]))
            self._save(state)
            return []
        return self._judge(rec, event, state, now, first_seen=now.timestamp())

    async def recheck(self, certificate_id: str, now: datetime | None = None) -> list[OutgoingRecord]:
        """Evaluate the certificate's pending events again, and send a due expiry alert."""
        now = now or datetime.now(UTC)
        state = _get(self.t.certs, certificate_id, CertState)
        if state is None:
            return []
        out: list[OutgoingRecord] = []
        while state is not None and state.pending:
            entry = state.pending[0]
            rec = ConsumedRecord(entry["topic"], entry["partition"], entry["offset"], entry["timestamp_ms"],
                                 bytes.fromhex(entry["key"]) if entry["key"] is not None else None,
                                 bytes.fromhex(entry["value"]), None, None)
            event = await self.decode(rec, "certificates")
            rest = state.pending[1:]
            state.pending = []
            before = len(out)
            out += self._judge(rec, event, state if state.event_id else None, now, first_seen=entry["first_seen"],
                               rest=rest)
            state = _get(self.t.certs, certificate_id, CertState)
            if state is not None and state.pending and state.pending[0]["event_id"] == entry["event_id"]:
                break  # still waiting
            if len(out) == before and state is None:
                break
        state = _get(self.t.certs, certificate_id, CertState)
        if state is not None and expiring_due(state, now, self.config.expiring_lead):
            out.append(self._expiring(state))
            state.expiring_sent = True
            self._save(state)
        return out

    def due(self, state: CertState, now: datetime) -> bool:
        """Whether :meth:`recheck` would do something for this certificate now (the worker's timer asks)."""
        if expiring_due(state, now, self.config.expiring_lead):
            return True
        if not state.pending:
            return False
        head = state.pending[0]
        if now.timestamp() - head["first_seen"] >= self.config.pending_timeout.total_seconds():
            return True
        return all(self.fact_known(m) for m in head["missing"])

    # -- internals --------------------------------------------------------------------------

    def _pending_entry(self, rec: ConsumedRecord, eid: str, now: datetime, missing: list[str],
                       first_seen: float | None = None) -> dict[str, Any]:
        return {"event_id": eid, "topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                "timestamp_ms": rec.timestamp_ms, "key": rec.key.hex() if rec.key is not None else None,
                "value": rec.value.hex(), "first_seen": first_seen or now.timestamp(), "missing": missing}

    def _evaluate(self, event: Any, state: CertState | None) -> Evaluation:
        if isinstance(event, CertificateIssued):
            issuer = _get(self.t.issuers, event.administrative.issuer_id, Issuer)
            twin = _get(self.t.twins, event.administrative.item.twin_id, Twin)
            return validate_issued(event, issuer=issuer, twin=twin, existing=state, policy=self.config.policy,
                                   event_id=str(event.event_id))
        if isinstance(event, CertificateRevoked):
            return validate_revoked(event, state)
        successor = _get(self.t.index, event.superseded_by, CertIndexEntry)
        return validate_superseded(event, state, successor)

    def _judge(self, rec: ConsumedRecord, event: Any, state: CertState | None, now: datetime, *,
               first_seen: float, rest: list[dict[str, Any]] | None = None) -> list[OutgoingRecord]:
        cid, eid = event.certificate_id, str(event.event_id)
        ev = self._evaluate(event, state)
        waited = now.timestamp() - first_seen
        if ev.pending and waited < self.config.pending_timeout.total_seconds():
            if state is None:
                state = CertState(cid, "PENDING", partition=rec.partition)
                if isinstance(event, CertificateIssued):
                    self._index(CertIndexEntry(cid, event.occurred_at.timestamp(), "PENDING"))
            state.pending = [self._pending_entry(rec, eid, now, ev.missing, first_seen), *(rest or [])]
            self._save(state)
            log.info("validation.pending", certificate_id=cid, missing=ev.missing)
            return []
        if ev.pending:  # waited too long: the missing facts are failures now
            ev = Evaluation([CheckOutcome(check=c.check, outcome="FAIL",
                                          detail=f"{c.detail}; still unknown after {int(waited)} s")
                             if c.outcome == "SKIPPED" else c for c in ev.checks], [], ev.bad_signature)
        out: list[OutgoingRecord] = []
        vid = derived_id("validated", event.event_id)
        value = self._validated_value(event, ev, vid)
        out.append(self._validated_record(cid, value, event.event_id, vid))
        if ev.bad_signature:
            signature = next(c for c in ev.checks if c.check == "signature")
            out.append(self.dead_letter(rec, "BAD_SIGNATURE", signature.detail or "bad signature"))
        elif isinstance(event, CertificateIssued) and has_non_finite(event):
            results = next(c for c in ev.checks if c.check == "results")
            out.append(self.dead_letter(rec, "VALIDATION_FAILED", results.detail or "non-finite number"))
        state = self._apply(event, ev, state, rec)
        state.judged[eid] = value.hex()
        state.pending = list(rest or [])
        self._save(state)
        if state.status == "VALID" and expiring_due(state, now, self.config.expiring_lead):
            out.append(self._expiring(state))
            state.expiring_sent = True
            self._save(state)
        return out

    def _apply(self, event: Any, ev: Evaluation, state: CertState | None, rec: ConsumedRecord) -> CertState:
        cid = event.certificate_id
        if isinstance(event, CertificateIssued):
            if state is not None and state.event_id not in (None, str(event.event_id)):
                return state  # a duplicate id does not replace the first certificate
            state = CertState(
                cid, "VALID" if ev.valid else "INVALID", event_id=str(event.event_id),
                version=event.aggregate_version, issued_at=event.occurred_at.timestamp(),
                valid_until=event.validity.valid_until.timestamp(), twin_id=event.administrative.item.twin_id,
                partition=rec.partition, judged=state.judged if state else {},
            )
            self._index(CertIndexEntry(cid, state.issued_at, state.status))
            return state
        if state is None:  # a lifecycle event of an unknown certificate: remember its verdict only
            return CertState(cid, "INVALID", partition=rec.partition)
        if ev.valid:
            state.status = "REVOKED" if isinstance(event, CertificateRevoked) else "SUPERSEDED"
            state.version = event.aggregate_version
            self._index(CertIndexEntry(cid, state.issued_at or 0.0, state.status))
        return state

    def _index(self, entry: CertIndexEntry) -> None:
        self.t.index[entry.certificate_id.encode()] = entry.to_bytes()

    def _save(self, state: CertState) -> None:
        self.t.certs[state.certificate_id.encode()] = state.to_bytes()

    def _validated_value(self, event: Any, ev: Evaluation, eid: Any) -> bytes:
        now = datetime.now(UTC)
        return self.serde.encode("CertificateValidated", {
            "event_id": eid, "event_type": "CertificateValidated", "occurred_at": now, "recorded_at": now,
            "source": WORKER, "correlation_id": event.certificate_id, "causation_id": str(event.event_id),
            "certificate_id": event.certificate_id, "certificate_version": event.aggregate_version,
            "verdict": ev.verdict,
            "checks": [{"check": c.check, "outcome": c.outcome, "detail": c.detail} for c in ev.checks],
            "validator_version": VALIDATOR_VERSION,
        })

    def _validated_record(self, cid: str, value: bytes, input_event_id: Any, eid: Any = None) -> OutgoingRecord:
        eid = eid or derived_id("validated", input_event_id)
        return OutgoingRecord(self.topics.topic("validations"), cid.encode(), value, str(eid))

    def _expiring(self, state: CertState) -> OutgoingRecord:
        eid = derived_id("expiring", state.certificate_id, state.event_id)
        now = datetime.now(UTC)
        try:
            value = self.serde.encode("CertificateExpiring", {
                "event_id": eid, "event_type": "CertificateExpiring", "occurred_at": now, "recorded_at": now,
                "source": WORKER, "correlation_id": state.certificate_id, "causation_id": state.event_id,
                "certificate_id": state.certificate_id, "twin_id": state.twin_id or "",
                "valid_until": datetime.fromtimestamp(state.valid_until or 0, UTC),
                "lead_time_seconds": int(self.config.expiring_lead.total_seconds()),
            })
        except EncodeError:  # pragma: no cover - our own record always fits
            raise
        return OutgoingRecord(self.topics.topic("alerts"), state.certificate_id.encode(), value, str(eid))


def is_certificate_event(event: Any) -> bool:
    return isinstance(event, _CERT_EVENTS)
