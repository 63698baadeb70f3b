"""Static export for auditors: checkpoints, tiles (tlog-tiles paths) and the public key."""

from __future__ import annotations

import shutil
from pathlib import Path

from streams.audit.store import AuditStore
from streams.audit.tiles import TILE_WIDTH


def tile_path(level: int, index: int, width: int) -> str:
    """tlog-tiles path: tile/<L>/<N> with N in 3-digit groups (x001/234), ``.p/<W>`` when partial."""
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    parts = [("x" + g) for g in reversed(groups[1:])] + [groups[0]]
    p = f"tile/{level}/" + "/".join(parts)
    return p if width == TILE_WIDTH else f"{p}.p/{width}"


async def export_log(store: AuditStore, out: Path, public_key: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    heads = await store.heads()
    (out / "checkpoints").mkdir(exist_ok=True)
    for h in heads:
        (out / "checkpoints" / f"{h.tree_size}").write_text(h.note)
    if heads:
        (out / "checkpoint").write_text(heads[-1].note)
    n = 0
    for level, idx, hashes in await store.all_tiles():
        p = out / tile_path(level, idx, len(hashes) // 32)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(hashes)
        n += 1
    if public_key.exists():
        shutil.copy(public_key, out / "log.pub.json")
    return f"exported {len(heads)} checkpoint(s), {n} tile(s) and the public key to {out}"
