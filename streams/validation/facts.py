"""What validation knows about the world: issuer keys, twins, certificate states.

Plain data, stored as JSON bytes in the worker's faust tables (issuer keys and
twins in GlobalTables, certificate lifecycle in a Table keyed by certificate
id, plus a GlobalTable index of certificates for supersession checks). The
``apply_*`` functions fold events into them; they are pure and idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from events.models import (
    IssuerKeyRegistered,
    IssuerKeyRevoked,
    TwinDecommissioned,
    TwinRegistered,
)
from events.signing import HybridPublicKey

Status = Literal["PENDING", "VALID", "INVALID", "REVOKED", "SUPERSEDED"]


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class IssuerKey:
    key_id: str
    ed25519: bytes
    ml_dsa: bytes
    parameter_set: str
    valid_from: datetime
    valid_until: datetime | None
    scope: tuple[str, ...]
    revoked_at: datetime | None = None

    def public(self) -> HybridPublicKey | None:
        """The key for verification, or None if its bytes are malformed."""
        try:
            return HybridPublicKey(self.key_id, self.ed25519, self.ml_dsa, self.parameter_set)  # type: ignore[arg-type]
        except ValueError:
            return None


@dataclass(frozen=True)
class Issuer:
    issuer_id: str
    issuer_name: str
    keys: dict[str, IssuerKey] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps({
            "issuer_id": self.issuer_id, "issuer_name": self.issuer_name,
            "keys": {k: {
                "key_id": v.key_id, "ed25519": v.ed25519.hex(), "ml_dsa": v.ml_dsa.hex(),
                "parameter_set": v.parameter_set, "valid_from": _ts(v.valid_from), "valid_until": _ts(v.valid_until),
                "scope": list(v.scope), "revoked_at": _ts(v.revoked_at),
            } for k, v in self.keys.items()},
        }).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Issuer:
        d = json.loads(data)
        return cls(d["issuer_id"], d["issuer_name"], {k: IssuerKey(
            key_id=v["key_id"], ed25519=bytes.fromhex(v["ed25519"]), ml_dsa=bytes.fromhex(v["ml_dsa"]),
            parameter_set=v["parameter_set"], valid_from=_dt(v["valid_from"]), valid_until=_dt(v["valid_until"]),
            scope=tuple(v["scope"]), revoked_at=_dt(v["revoked_at"]),
        ) for k, v in d["keys"].items()})


def apply_issuer_event(current: Issuer | None, event: IssuerKeyRegistered | IssuerKeyRevoked) -> Issuer | None:
    """The issuer after ``event``; a revocation of an unknown key is recorded so a later
    registration of that key is born revoked (events of one issuer are ordered, but be safe)."""
    if isinstance(event, IssuerKeyRegistered):
        key = IssuerKey(
            key_id=event.key_id, ed25519=event.ed25519_public_key, ml_dsa=event.ml_dsa_public_key,
            parameter_set=event.ml_dsa_parameter_set, valid_from=event.valid_from, valid_until=event.valid_until,
            scope=tuple(sorted({s for a in event.accreditations for s in a.scope})),
        )
        old = current.keys.get(event.key_id) if current else None
        if old is not None and old.revoked_at is not None:
            key = replace(key, revoked_at=old.revoked_at)
        keys = dict(current.keys) if current else {}
        keys[event.key_id] = key
        return Issuer(event.issuer_id, event.issuer_name, keys)
    if current is None or event.key_id not in current.keys:
        return current
    key = current.keys[event.key_id]
    revoked = event.effective_at if key.revoked_at is None else min(key.revoked_at, event.effective_at)
    return replace(current, keys={**current.keys, event.key_id: replace(key, revoked_at=revoked)})


@dataclass(frozen=True)
class Twin:
    twin_id: str
    decommissioned_at: datetime | None = None

    def to_bytes(self) -> bytes:
        return json.dumps({"twin_id": self.twin_id, "decommissioned_at": _ts(self.decommissioned_at)}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Twin:
        d = json.loads(data)
        return cls(d["twin_id"], _dt(d["decommissioned_at"]))


def apply_twin_event(current: Twin | None, event: Any) -> Twin | None:
    """Only registration and decommissioning matter to validation."""
    if isinstance(event, TwinRegistered):
        return Twin(event.twin_id, current.decommissioned_at if current else None)
    if isinstance(event, TwinDecommissioned):
        return Twin(event.twin_id, event.occurred_at if current is None or current.decommissioned_at is None
                    else min(current.decommissioned_at, event.occurred_at))
    return current


@dataclass
class CertState:
    """One certificate's lifecycle, the value of the certificates Table (keyed by certificate id).

    ``pending`` holds the framed bytes (hex) of events of this certificate still waiting for a
    fact, oldest first, with the time the worker first saw them.
    """

    certificate_id: str
    status: Status
    event_id: str | None = None           # the CertificateIssued event that created it
    version: int = 0                      # highest aggregate_version judged
    issued_at: float | None = None
    valid_until: float | None = None
    twin_id: str | None = None
    partition: int = 0                    # the certificates-topic partition it lives on
    expiring_sent: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)
    judged: dict[str, str] = field(default_factory=dict)  # input event_id -> its CertificateValidated (hex)

    def to_bytes(self) -> bytes:
        return json.dumps(vars(self)).encode()  # the fields, in order (asdict's deep copy is not needed)

    @classmethod
    def from_bytes(cls, data: bytes) -> CertState:
        return cls(**json.loads(data))


@dataclass(frozen=True)
class CertIndexEntry:
    """The certificate index (GlobalTable): what a supersession check needs of another certificate."""

    certificate_id: str
    issued_at: float
    status: Status

    def to_bytes(self) -> bytes:
        return json.dumps(vars(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CertIndexEntry:
        return cls(**json.loads(data))
