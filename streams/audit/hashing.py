"""The definitions writer and verifier share: RFC 6962 hashes and the leaf encoding.

Nothing else is shared between :mod:`streams.audit` (the writer) and
:mod:`streams.audit.verifier`; keep this module small and dependency-free.

Leaf data, version 1 (all integers big-endian, unsigned)::

    u8   version = 1
    u16  len(topic) || topic      the topic name WITHOUT the deployment prefix, UTF-8
    u32  partition
    u64  offset
    u8   key_present (0 or 1) || [u32 len(key) || key]
    u32  len(value) || value      the record's exact value bytes (Confluent-framed Avro)

leaf hash = SHA-256(0x00 || leaf data); node hash = SHA-256(0x01 || left || right);
the root of the empty tree is SHA-256("").
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_FORMAT_VERSION = 1

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 MTH of a one-leaf tree: SHA-256(0x00 || data)."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node: SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


_head = struct.Struct(">BH")
_pos = struct.Struct(">IQ")
_u32 = struct.Struct(">I")


def leaf_data(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> bytes:
    """The documented encoding of one Kafka record as a leaf (see the module docstring)."""
    t = topic.encode()
    key_part = b"\x00" if key is None else b"\x01" + _u32.pack(len(key)) + key
    return b"".join((
        _head.pack(LEAF_FORMAT_VERSION, len(t)), t, _pos.pack(partition, offset), key_part,
        _u32.pack(len(value)), value,
    ))


def record_leaf_hash(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> bytes:
    return _sha256(LEAF_PREFIX + leaf_data(topic, partition, offset, key, value)).digest()


_u64 = struct.Struct(">Q")


def partition_leaf_hasher(topic: str, partition: int) -> Callable[[int, bytes | None, bytes], bytes]:
    """``record_leaf_hash`` for the records of one partition: ``(offset, key, value) -> leaf hash``.

    The same bytes as :func:`leaf_data`, with the part that is constant per partition (prefix,
    version, topic, partition) built once: the hot loops of the writer and of ``verify`` call this.
    """
    t = topic.encode()
    prefix = LEAF_PREFIX + _head.pack(LEAF_FORMAT_VERSION, len(t)) + t + _u32.pack(partition)
    sha, join, u32, u64 = _sha256, b"".join, _u32.pack, _u64.pack

    def leaf(offset: int, key: bytes | None, value: bytes) -> bytes:
        if key is None:
            return sha(join((prefix, u64(offset), b"\x00", u32(len(value)), value))).digest()
        return sha(join((prefix, u64(offset), b"\x01", u32(len(key)), key, u32(len(value)), value))).digest()

    return leaf


def partition_leaf_hashes(topic: str, partition: int, records: list) -> list[bytes]:
    """``partition_leaf_hasher(topic, partition)(r.offset, r.key, r.value)`` for each record of one
    partition (the writer's batch), without a call per record."""
    t = topic.encode()
    prefix = LEAF_PREFIX + _head.pack(LEAF_FORMAT_VERSION, len(t)) + t + _u32.pack(partition)
    sha, join, u32, u64 = _sha256, b"".join, _u32.pack, _u64.pack
    return [
        sha(join((prefix, u64(r.offset), b"\x00", u32(len(r.value)), r.value))).digest() if r.key is None else
        sha(join((prefix, u64(r.offset), b"\x01", u32(len(r.key)), r.key, u32(len(r.value)), r.value))).digest()
        for r in records
    ]
