"""Proof documents for ``qi audit prove`` / ``consistency`` (JSON, hashes base64)."""

from __future__ import annotations

import base64
from typing import Any

from streams.audit.errors import NotInLog
from streams.audit.store import AuditStore
from streams.audit.tiles import TileReader, consistency_ranges, inclusion_ranges, perfect_subtrees, tile_of


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


async def _range_hashes(store: AuditStore, ranges: list[tuple[int, int]],
                        have: dict[tuple[int, int], bytes] | None = None) -> list[bytes]:
    tiles = dict(have or {})
    wanted = {tile_of(lvl, idx)[:2] for lo, hi in ranges for lvl, idx in perfect_subtrees(lo, hi)}
    if missing := wanted - tiles.keys():
        tiles.update(await store.tiles(missing))
    return TileReader(lambda _w: tiles, store.tile_nodes).range_hashes(ranges)


async def inclusion_document(store: AuditStore, event_id: str) -> dict[str, Any]:
    """The inclusion proof of an event's leaf against the latest signed head."""
    found = await store.inclusion_material(event_id)  # entry, head and the tiles: one round trip
    if found is None:
        raise NotInLog(f"event {event_id} is not in log {store.log_id}", what="event")
    entry, size, note, tiles = found
    if size is None or size <= entry.leaf_index:
        raise NotInLog(f"leaf {entry.leaf_index} is not covered by a signed head yet; retry after the next head",
                       what="head")
    hashes = await _range_hashes(store, inclusion_ranges(entry.leaf_index, size), tiles)
    return {
        "kind": "inclusion", "log_id": store.log_id, "event_id": event_id, "leaf_index": entry.leaf_index,
        "tree_size": size, "leaf_hash": _b64(entry.leaf_hash), "hashes": [_b64(h) for h in hashes],
        "checkpoint": note,
        "source": {"topic": entry.source_topic, "partition": entry.source_partition,
                   "offset": entry.source_offset, "event_type": entry.source_event_type},
    }


async def consistency_document(store: AuditStore, old: int, new: int) -> dict[str, Any]:
    """The consistency proof from size ``old`` to ``new``; signed notes included where heads exist."""
    head = await store.latest_head()
    if head is None or not 0 < old <= new <= head.tree_size:
        raise NotInLog(f"need 0 < OLD <= NEW <= {head.tree_size if head else 0} (the latest signed head)",
                       what="size")
    hashes = [] if old == new else await _range_hashes(store, consistency_ranges(old, new))
    roots = await _range_hashes(store, [(0, old), (0, new)])
    doc: dict[str, Any] = {
        "kind": "consistency", "log_id": store.log_id, "old_size": old, "new_size": new,
        "old_root": _b64(roots[0]), "new_root": _b64(roots[1]), "hashes": [_b64(h) for h in hashes],
    }
    for key, size in (("old_checkpoint", old), ("new_checkpoint", new)):
        h = await store.head(size)
        if h is not None:
            doc[key] = h.note
    return doc
