"""The tree's state: a compact range over [0, size), one hash per set bit of the size."""

from __future__ import annotations

import hashlib

from streams.audit.hashing import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX, node_hash

_sha256 = hashlib.sha256


class CompactRange:
    """Roots of the perfect subtrees that make up the tree, largest (leftmost) first."""

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None) -> None:
        hashes = list(hashes or [])
        if len(hashes) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} has {bin(size).count('1')} hashes, not {len(hashes)}")
        self.size = size
        self.hashes = hashes

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)

    def append(self, leaf: bytes, completed: list[tuple[int, int, bytes]] | None = None) -> None:
        """Add a leaf hash; the nodes it completes at tile levels (0, 8, 16, ...) go to ``completed``
        as (level, index, hash), the leaf itself first: what the tiles store."""
        index = self.size
        hashes = self.hashes
        if completed is not None:
            completed.append((0, index, leaf))
        h, n, level = leaf, index, 0
        while n & 1:
            h = _sha256(b"".join((NODE_PREFIX, hashes.pop(), h))).digest()  # node_hash, inlined
            n >>= 1
            level += 1
            if completed is not None and not level & 7:
                completed.append((level, n, h))
        hashes.append(h)
        self.size = index + 1

    def extend(self, leaves: list[bytes], completed: list[tuple[int, int, bytes]], *, note_leaves: bool = True) -> None:
        """``append`` for many leaves (the writer's hot loop): the same hashes and ``completed``
        (without the leaves themselves if not ``note_leaves``: the writer's tiles take those in bulk)."""
        hashes, pop, push, sha, join, prefix = self.hashes, self.hashes.pop, self.hashes.append, _sha256, \
            b"".join, NODE_PREFIX
        note = completed.append
        index = self.size
        for leaf in leaves:
            if note_leaves:
                note((0, index, leaf))
            h, n, level = leaf, index, 0
            while n & 1:
                h = sha(join((prefix, pop(), h))).digest()
                n >>= 1
                level += 1
                if not level & 7:
                    note((level, n, h))
            push(h)
            index += 1
        self.size = index
        del hashes  # (bound methods above hold the list)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        return cls(size, [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])
