"""Signing tree heads: one hybrid signature over the C2SP tlog-checkpoint body.

The signed message of a TreeHeadSigned event and of the signed note is the same: the note body
``<origin>\\n<size>\\n<base64 root>\\n``. The note carries one signature line per algorithm::

    — <origin> base64(key id (4 bytes) || signature)

key id = SHA-256(origin || 0x0A || type || public key)[:4], type 0x01 for Ed25519 (C2SP) and
0xFF || "ML-DSA-65" for ML-DSA-65 (no byte is assigned; the spec's escape, decision 0042).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

from streams.audit.store import Head

SIG_TYPES = {"Ed25519": b"\x01", "ML_DSA_65": b"\xffML-DSA-65"}


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def key_id(origin: str, algorithm: str, public_key: bytes) -> bytes:
    return hashlib.sha256(origin.encode() + b"\n" + SIG_TYPES[algorithm] + public_key).digest()[:4]


def sign_head(key_pair: Any, origin: str, size: int, root: bytes, now: datetime | None = None) -> Head:
    """Sign (size, root) with the log's hybrid key pair; returns the head with its signed note."""
    body = checkpoint_body(origin, size, root)
    sigs = key_pair.sign(body.encode())
    pub = key_pair.public
    raw_keys = {"Ed25519": pub.ed25519, "ML_DSA_65": pub.ml_dsa_65}
    lines = []
    for s in sigs:
        kid = key_id(origin, s.algorithm, raw_keys[s.algorithm])
        lines.append(f"\u2014 {origin} {base64.b64encode(kid + s.value).decode()}\n")
    note = body + "\n" + "".join(lines)
    return Head(
        tree_size=size, root=root,
        signatures=[{"key_id": s.key_id, "algorithm": s.algorithm, "value": s.value.hex()} for s in sigs],
        note=note, signed_at=now or datetime.now(UTC),
    )
