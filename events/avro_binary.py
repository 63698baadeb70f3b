"""Avro binary primitives for the hand-written batch encoders (streams/anomaly/wire.py,
streams/audit/entry_codec.py). Each encoder checks its output against ``Serde.encode`` at start and
falls back to the serde when a schema changes, so these only need to be the spec's encodings."""

from __future__ import annotations


def encode_long(n: int) -> bytes:
    """An Avro int/long: zigzag, then base-128 varint, low group first."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def encode_string(s: str) -> bytes:
    """An Avro string: its UTF-8 length as a long, then the bytes."""
    b = s.encode()
    return encode_long(len(b)) + b
