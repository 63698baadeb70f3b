"""A fast encoder for AuditEntryAppended (one per leaf: the writer's hottest output).

Avro binary written by hand for the v1 field order; at start the writer checks it against
``Serde.encode`` on a sample and falls back to the serde if they differ (a new schema version).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from events.avro_binary import encode_long

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_SMALL = [encode_long(i) for i in range(1 << 13)]


def _long(n: int) -> bytes:
    return _SMALL[n] if 0 <= n < 8192 else encode_long(n)


def _ulong(n: int) -> bytes:
    """``_long`` for n >= 0 (indexes, offsets); the 3- and 4-byte varints (n < 2^27) inline."""
    if n < 8192:
        return _SMALL[n]
    z = n << 1  # zigzag of n >= 0
    if z < 1 << 21:
        return bytes(((z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, z >> 14))
    if z < 1 << 28:
        return bytes(((z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, ((z >> 14) & 0x7F) | 0x80, z >> 21))
    return encode_long(n)


_LEN32 = encode_long(32)  # a leaf hash is always 32 bytes (SHA-256)
_LEN36 = encode_long(36)  # a UUID in its canonical text form


def _str(s: str) -> bytes:
    b = s.encode()
    return _long(len(b)) + b


def _opt(s: str | None) -> bytes:
    return b"\x00" if s is None else b"\x02" + _str(s)


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // _US


class EntryEncoder:
    """Encodes AuditEntryAppended v1 records after a 5-byte Confluent header."""

    def __init__(self, header: bytes, source: str, log_id: str) -> None:
        self._header = header
        self._fixed_head = _str("AuditEntryAppended")
        self._source_part = _str(source) + b"\x00"  # source, correlation_id = null
        self._log_id = _str(log_id)
        self._at: datetime | None = None
        self._strs: dict[str, bytes] = {}  # topics: a handful of distinct values
        self._opts: dict[str | None, bytes] = {None: b"\x00"}  # event types, likewise
        self._after_id = b""

    def _cached(self, s: str) -> bytes:
        b = self._strs.get(s)
        if b is None:
            b = self._strs[s] = _str(s)
        return b

    def _cached_opt(self, s: str | None) -> bytes:
        b = self._opts.get(s)
        if b is None:
            b = self._opts[s] = b"\x02" + _str(s)  # type: ignore[arg-type]
        return b

    def encode(self, event_id: str, at: datetime, causation: str | None, leaf_index: int, leaf_hash: bytes,
               topic: str, partition: int, offset: int, source_event_id: str | None,
               source_event_type: str | None) -> bytes:
        if at is not self._at:  # one timestamp per batch: encode it (and what follows the id) once
            ts = _long(_micros(at))
            self._at, self._after_id = at, self._fixed_head + ts + ts + self._source_part
        ev = self._opt_id(causation)
        eb = event_id.encode()
        return b"".join((
            self._header, _LEN36 if len(eb) == 36 else _long(len(eb)), eb,
            self._after_id, ev, self._log_id, _ulong(leaf_index) if leaf_index >= 0 else _long(leaf_index),
            _LEN32 if len(leaf_hash) == 32 else _long(len(leaf_hash)), leaf_hash, self._cached(topic),
            _long(partition), _ulong(offset) if offset >= 0 else _long(offset),
            ev if source_event_id == causation else self._opt_id(source_event_id),
            self._cached_opt(source_event_type),
        ))

    def encode_rows(self, rows: list, at: datetime, leaf_ids: Callable[[int], str],
                    canonical: dict[tuple[str, int], str]) -> list[bytes]:
        """``encode`` for the writer's rows ``(leaf_index, topic, partition, offset, event_id, event_type,
        leaf_hash)`` of one batch (event id = ``leaf_ids(leaf_index)``, causation = source event id,
        canonical topic per (topic, partition)): the same bytes, with what is constant per batch and
        per partition built once."""
        if at is not self._at:
            ts = _long(_micros(at))
            self._at, self._after_id = at, self._fixed_head + ts + ts + self._source_part
        after, log_id, opt_id, small, ulong, long_ = self._after_id, self._log_id, self._opt_id, _SMALL, _ulong, _long
        first = self._header + _LEN36
        tparts = {tp: self._cached(c) + _long(tp[1]) for tp, c in canonical.items()}  # topic, partition
        types = self._opts
        join = b"".join
        out = []
        contiguous = bool(rows) and rows[-1][0] - rows[0][0] == len(rows) - 1 and hasattr(leaf_ids, "ascii_range")
        ids = iter(leaf_ids.ascii_range(rows[0][0], len(rows)) if contiguous else  # type: ignore[attr-defined]
                   [leaf_ids(r[0]).encode() for r in rows])
        some36 = b"\x02" + _LEN36
        for i, t, p, o, eid, et, lh in rows:
            eb = next(ids)
            ev = b"\x00" if eid is None else (some36 + eid.encode() if len(eid) == 36 and eid.isascii() else opt_id(eid))
            etb = types.get(et)
            if etb is None:
                etb = self._cached_opt(et)
            out.append(join((
                first if len(eb) == 36 else self._header + _long(len(eb)), eb, after, ev, log_id,
                (small[i] if i < 8192 else ulong(i)) if i >= 0 else long_(i),
                _LEN32 if len(lh) == 32 else _long(len(lh)), lh, tparts[(t, p)],
                ulong(o) if o >= 0 else long_(o), ev, etb,
            )))
        return out

    @staticmethod
    def _opt_id(s: str | None) -> bytes:
        if s is None:
            return b"\x00"
        b = s.encode()
        return (b"\x02" + _LEN36 if len(b) == 36 else b"\x02" + _long(len(b))) + b
