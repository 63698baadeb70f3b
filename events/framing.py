"""Confluent wire framing: magic byte 0, 4-byte big-endian schema id, Avro body.

Any Kafka tool that knows a Schema Registry can read records framed this way.
"""

from __future__ import annotations

import struct

from events.errors import NotFramedError

MAGIC = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">bI")


def header(schema_id: int) -> bytes:
    """The 5-byte prefix for a schema id."""
    if not 0 < schema_id < 2**31:
        raise ValueError(f"schema id out of range: {schema_id}")
    return _HEADER.pack(MAGIC, schema_id)


def schema_id_of(data: bytes | memoryview) -> int:
    """The schema id in a framed record, or :class:`NotFramedError`."""
    if len(data) < HEADER_SIZE:
        raise NotFramedError(f"record of {len(data)} bytes is shorter than the 5-byte Confluent header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise NotFramedError(f"magic byte is {magic}, not {MAGIC}: not Confluent Avro framing")
    return schema_id
