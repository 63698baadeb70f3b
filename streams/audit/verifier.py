"""The verifier: checks proofs, roots and checkpoints with no code from the writer.

It imports only :mod:`streams.audit.hashing` (the hash and leaf definitions) and,
for signatures, :mod:`events.signing`. The proof algorithms are RFC 9162
§2.1.3.2 (inclusion) and §2.1.4.2 (consistency), with the policy of
transparency-dev/merkle where the RFC is silent: a leaf hash must be 32 bytes, a
consistency proof from size 0 is rejected, equal sizes need an empty proof and
equal roots.

Failures raise :class:`VerificationError` whose ``reason`` is a stable code.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from streams.audit.hashing import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX, leaf_hash, node_hash

_sha256 = hashlib.sha256


class VerificationError(Exception):
    """A proof, root or checkpoint does not verify. ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------- proofs (RFC 9162)

def root_from_inclusion_proof(leaf_index: int, tree_size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    if leaf_index < 0 or tree_size <= 0 or leaf_index >= tree_size:
        raise VerificationError("index_out_of_range", f"leaf index {leaf_index} not in a tree of {tree_size}")
    if len(leaf) != HASH_SIZE:
        raise VerificationError("bad_leaf_hash", f"leaf hash has {len(leaf)} bytes, want {HASH_SIZE}")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("proof_too_long", "inclusion proof has too many hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("proof_too_short", "inclusion proof has too few hashes")
    return r


def verify_inclusion(leaf_index: int, tree_size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    got = root_from_inclusion_proof(leaf_index, tree_size, leaf, proof)
    if got != root:
        raise VerificationError("root_mismatch", "inclusion proof leads to a different root")


def verify_consistency(size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes) -> None:
    if size1 < 0 or size2 < 0 or size1 > size2:
        raise VerificationError("bad_sizes", f"sizes {size1} -> {size2}")
    if size1 == 0:
        raise VerificationError("bad_sizes", "no consistency proof from the empty tree (RFC 6962: 0 < m)")
    if size1 == size2:
        if proof:
            raise VerificationError("proof_too_long", "equal sizes need an empty proof")
        if root1 != root2:
            raise VerificationError("root_mismatch", "equal sizes with different roots")
        return
    if not proof:
        raise VerificationError("proof_too_short", "empty consistency proof")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is a node of the new tree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("proof_too_long", "consistency proof has too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("proof_too_short", "consistency proof has too few hashes")
    if fr != root1:
        raise VerificationError("root_mismatch", "consistency proof does not lead to the old root")
    if sr != root2:
        raise VerificationError("root_mismatch", "consistency proof does not lead to the new root")


class RootAccumulator:
    """Roots of a growing tree from its leaf hashes, O(log n) memory (the verifier's own stack)."""

    def __init__(self) -> None:
        self._stack: list[bytes] = []  # perfect subtree roots, largest first
        self.size = 0

    def add(self, leaf: bytes) -> None:
        self.size += 1
        h, n, stack = leaf, self.size, self._stack
        while not n & 1:
            h = _sha256(b"".join((NODE_PREFIX, stack.pop(), h))).digest()  # node_hash, inlined
            n >>= 1
        stack.append(h)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            r = node_hash(h, r)
        return r


def tree_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree over ``leaves`` (already hashed), built bottom-up a level at a time.

    Level ``k`` holds the roots of the perfect subtrees of ``2**k`` leaves, left to right
    (``len(leaves) >> k`` of them): node ``j`` of level ``k + 1`` is ``node_hash`` of nodes ``2j`` and
    ``2j + 1`` of level ``k``. One comprehension per level instead of a stack push per leaf.
    """
    levels = [leaves]
    sha, pre = _sha256, NODE_PREFIX
    level = leaves
    while len(level) > 1:
        level = [sha(pre + a + b).digest() for a, b in zip(level[0::2], level[1::2])]
        levels.append(level)
    return levels


def root_from_levels(levels: list[list[bytes]], size: int) -> bytes:
    """RFC 6962 MTH of the first ``size`` leaves, from :func:`tree_levels` of at least that many.

    The first ``size`` leaves split into perfect subtrees, one per set bit of ``size``, largest
    first; the root folds them from the right (as :meth:`RootAccumulator.root`).
    """
    if size < 0 or size > len(levels[0]):
        raise ValueError(f"size {size} outside a tree of {len(levels[0])} leaves")
    if size == 0:
        return EMPTY_ROOT
    parts, start = [], 0
    for k in range(size.bit_length() - 1, -1, -1):
        if size >> k & 1:
            parts.append(levels[k][start >> k])
            start += 1 << k
    r = parts[-1]
    for h in reversed(parts[:-1]):
        r = node_hash(h, r)
    return r


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH of already-hashed leaves."""
    if not leaves:
        return EMPTY_ROOT
    return root_from_levels(tree_levels(list(leaves)), len(leaves))


# ---------------------------------------------------------------- checkpoints (C2SP signed notes)

#: C2SP signed-note signature type of Ed25519; ML-DSA-65 has no assigned byte, so it uses the
#: spec's 0xff escape followed by a label (verifiers that do not know it ignore the line).
SIG_TYPE = {"Ed25519": b"\x01", "ML_DSA_65": b"\xffML-DSA-65"}
DASH = "\u2014"


def note_body(origin: str, size: int, root: bytes) -> str:
    """The tlog-checkpoint body: origin, size, base64 root, each ending in a newline."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def note_key_id(name: str, algorithm: str, public_key: bytes) -> bytes:
    """C2SP key id: SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + SIG_TYPE[algorithm] + public_key).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    body: str
    signatures: list[tuple[str, bytes, bytes]]  # (key name, key id, signature)


def parse_checkpoint(text: str) -> Checkpoint:
    body, sep, sigs = text.partition("\n\n")
    if not sep:
        raise VerificationError("bad_checkpoint", "no blank line between note text and signatures")
    lines = body.split("\n")
    if len(lines) < 3:
        raise VerificationError("bad_checkpoint", "a checkpoint needs origin, size and root lines")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise VerificationError("bad_checkpoint", f"bad tree size line {size_s!r}")
    try:
        root = base64.b64decode(root_s, validate=True)
    except ValueError as e:
        raise VerificationError("bad_checkpoint", "root line is not base64") from e
    parsed = []
    for line in sigs.splitlines():
        if not line.startswith(DASH + " "):
            raise VerificationError("bad_checkpoint", "a signature line must start with an em dash")
        try:
            name, b64 = line[2:].rsplit(" ", 1)
            raw = base64.b64decode(b64, validate=True)
        except ValueError as e:
            raise VerificationError("bad_checkpoint", "malformed signature line") from e
        if len(raw) < 5:
            raise VerificationError("bad_checkpoint", "signature line too short")
        parsed.append((name, raw[:4], raw[4:]))
    return Checkpoint(origin, int(size_s), root, body + "\n", parsed)


def verify_signatures(public_key: Any, message: bytes, signatures: list[Any]) -> None:
    """Both signatures of the hybrid pair must verify (``events.signing.verify_hybrid``)."""
    from events.signing import verify_hybrid

    verdict = verify_hybrid(public_key, message, signatures)
    if not verdict.ok:
        which = [a for a, ok in (("Ed25519", verdict.ed25519), ("ML-DSA-65", verdict.ml_dsa)) if not ok]
        raise VerificationError("bad_signature", f"{' and '.join(which)} signature does not verify")


def verify_checkpoint(text: str, public_key: Any, *, origin: str | None = None) -> Checkpoint:
    """Parse a signed note and check both hybrid signatures by the log's public key."""
    from events.models import Signature

    cp = parse_checkpoint(text)
    if origin is not None and cp.origin != origin:
        raise VerificationError("wrong_origin", f"checkpoint is for {cp.origin!r}, not {origin!r}")
    wanted = {
        note_key_id(cp.origin, "Ed25519", public_key.ed25519): "Ed25519",
        note_key_id(cp.origin, "ML_DSA_65", public_key.ml_dsa_65): "ML_DSA_65",
    }
    sigs = [
        Signature(key_id=public_key.key_id, algorithm=wanted[kid], value=sig)
        for name, kid, sig in cp.signatures if name == cp.origin and kid in wanted
    ]
    verify_signatures(public_key, cp.body.encode(), sigs)
    return cp


# ---------------------------------------------------------------- proof files (`qi audit prove` output)

def _b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def verify_proof_document(doc: dict[str, Any], public_key: Any) -> str:
    """Check an inclusion or consistency proof document offline; returns a one-line summary."""
    kind = doc.get("kind", "inclusion")
    if kind == "inclusion":
        cp = verify_checkpoint(doc["checkpoint"], public_key, origin=doc["log_id"])
        if cp.size != doc["tree_size"]:
            raise VerificationError("size_mismatch", f"proof is for size {doc['tree_size']}, checkpoint {cp.size}")
        leaf = _b64(doc["leaf_hash"])
        if "leaf_data" in doc and leaf_hash(_b64(doc["leaf_data"])) != leaf:
            raise VerificationError("bad_leaf_hash", "leaf_data does not hash to leaf_hash")
        verify_inclusion(doc["leaf_index"], cp.size, leaf, [_b64(h) for h in doc["hashes"]], cp.root)
        return f"OK: leaf {doc['leaf_index']} is in {cp.origin} at size {cp.size}"
    if kind == "consistency":
        sides, unsigned = [], []
        for side in ("old", "new"):
            if f"{side}_checkpoint" in doc:  # signed: size and root come from the checkpoint
                cp = verify_checkpoint(doc[f"{side}_checkpoint"], public_key, origin=doc["log_id"])
                if cp.size != doc[f"{side}_size"]:
                    raise VerificationError("size_mismatch", f"{side} checkpoint is for size {cp.size}")
                sides.append((cp.size, cp.root))
            else:
                sides.append((doc[f"{side}_size"], _b64(doc[f"{side}_root"])))
                unsigned.append(side)
        (m, r1), (n, r2) = sides
        verify_consistency(m, n, [_b64(h) for h in doc["hashes"]], r1, r2)
        note = f" (the {' and '.join(unsigned)} root(s) carry no signature)" if unsigned else ""
        return f"OK: size {n} of {doc['log_id']} extends size {m}{note}"
    raise VerificationError("bad_document", f"unknown proof kind {kind!r}")
