"""Tiles (tlog-tiles layout) and proof generation from them.

A tile at tile-level T and index N holds up to 256 hashes: the nodes of tree level 8·T with
indexes N·256 .. N·256+255. A node at level L = 8·T + k is recomputed from the 2^k hashes of its
tile below it, so an inclusion or consistency proof reads one or two tiles per tile-level.
A tile's stored hashes never change; a partial tile (width < 256) only grows.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable

from streams.audit.hashing import NODE_PREFIX, node_hash

_sha256 = hashlib.sha256

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT

#: Fetches tiles: {(tile_level, tile_index)} -> {(tile_level, tile_index): concatenated hashes}.
TileFetcher = Callable[[set[tuple[int, int]]], dict[tuple[int, int], bytes]]


def tile_of(level: int, index: int) -> tuple[int, int, int, int]:
    """(tile level, tile index, first slot, number of slots) holding node (level, index)."""
    t, k = divmod(level, TILE_HEIGHT)
    first = index << k
    return t, first >> TILE_HEIGHT, first % TILE_WIDTH, 1 << k


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) as perfect subtree nodes (level, index), left to right (start aligned)."""
    out = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else 63
        while (1 << level) > end - start:
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The [start, end) ranges whose MTHs form PATH(index, D[0:size]), bottom-up (RFC 6962 §2.1.1).

    A loop down the tree, not the RFC's recursion: a recursive closure is a reference cycle, so
    every proof left garbage for the cyclic collector, whose pauses were the proofs' p99."""
    out: list[tuple[int, int]] = []  # top-down; reversed at the end
    m, lo, hi = index, 0, size
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if m < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            m, lo = m - k, lo + k
    out.reverse()
    return out


def consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs form PROOF(m, D[0:n]) (RFC 6962 §2.1.2), 0 < m < n (a loop, as
    :func:`inclusion_ranges`)."""
    out: list[tuple[int, int]] = []  # top-down; reversed at the end
    lo, hi, b = 0, n, True
    while m != hi - lo:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            m, lo, b = m - k, lo + k, False
    if not b:
        out.append((lo, hi))
    out.reverse()
    return out


class TileNodes:
    """The nodes inside tiles: a tile's hashes combined a level at a time into every node it holds.

    Kept for the ``capacity`` tiles used last, keyed by the tile's bytes, so a cached answer is
    always that of the same hashes (a tile only grows: a wider tile is another key). A proof in a
    million-leaf log then recomputes only its leaf tile: the tiles above and the right edge's
    partial tiles are shared by every proof against the same head.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._cache: OrderedDict[bytes, list[list[bytes]]] = OrderedDict()

    def levels(self, data: bytes) -> list[list[bytes]]:
        """Level ``k`` of the result: the nodes of ``2**k`` of the tile's hashes, left to right."""
        cache = self._cache
        levels = cache.get(data)
        if levels is not None:
            cache.move_to_end(data)
            return levels
        level = [data[i:i + 32] for i in range(0, len(data) - len(data) % 32, 32)]
        levels = [level]
        sha, pre = _sha256, NODE_PREFIX
        while len(level) > 1:
            level = [sha(pre + a + b).digest() for a, b in zip(level[0::2], level[1::2])]
            levels.append(level)
        if self._capacity > 0:
            cache[data] = levels
            if len(cache) > self._capacity:
                cache.popitem(last=False)
        return levels


def _node(levels: dict[tuple[int, int], list[list[bytes]]], level: int, index: int) -> bytes:
    t, n, first, count = tile_of(level, index)
    k = level % TILE_HEIGHT
    tile = levels.get((t, n))
    if tile is None or len(tile[0]) < first + count:
        raise LookupError(f"tile {t}/{n} does not hold node {level}/{index}")
    return tile[k][first >> k]


class TileReader:
    """Node hashes of a tree of a given size, read from tiles (fetched in one round per proof)."""

    def __init__(self, fetch: TileFetcher, nodes: TileNodes | None = None) -> None:
        self._fetch = fetch
        self._nodes = nodes if nodes is not None else TileNodes(capacity=0)

    def range_hashes(self, ranges: Iterable[tuple[int, int]]) -> list[bytes]:
        ranges = list(ranges)
        nodes = {n for lo, hi in ranges for n in perfect_subtrees(lo, hi)}
        wanted = {tile_of(lvl, idx)[:2] for lvl, idx in nodes}
        tiles = self._fetch(wanted)
        levels = {key: self._nodes.levels(tiles[key]) for key in wanted if key in tiles}
        cache: dict[tuple[int, int], bytes] = {}
        for lvl, idx in nodes:
            cache[(lvl, idx)] = _node(levels, lvl, idx)
        out = []
        for lo, hi in ranges:
            subs = [cache[n] for n in perfect_subtrees(lo, hi)]
            r = subs[-1]
            for h in reversed(subs[:-1]):
                r = node_hash(h, r)
            out.append(r)
        return out

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size:
            raise IndexError(f"leaf {index} is not in a tree of size {size}")
        return self.range_hashes(inclusion_ranges(index, size))

    def consistency_proof(self, m: int, n: int) -> list[bytes]:
        if not 0 < m <= n:
            raise IndexError(f"no consistency proof from {m} to {n}")
        return [] if m == n else self.range_hashes(consistency_ranges(m, n))

    def leaf_hash(self, index: int) -> bytes:
        return self.range_hashes([(index, index + 1)])[0]

    def root(self, size: int) -> bytes:
        return self.range_hashes([(0, size)])[0]


def proof_tiles(index: int, size: int) -> set[tuple[int, int]]:
    """The tiles an inclusion proof of ``index`` in a tree of ``size`` reads, as far as tested: per
    tile level, the tile on the leaf's path and the tile at the right edge. ``AuditStore.
    inclusion_material`` fetches these with the entry; the prover fetches any other it needs."""
    out, t = set(), 0
    while size >> (TILE_HEIGHT * t):
        out.add((t, index >> (TILE_HEIGHT * (t + 1))))
        out.add((t, size >> (TILE_HEIGHT * (t + 1))))
        t += 1
    return out


class TileBuilder:
    """The right-edge tiles of a growing tree: collects completed nodes, hands out changed tiles."""

    def __init__(self, partial: dict[tuple[int, int], bytes] | None = None) -> None:
        self._tiles: dict[tuple[int, int], bytearray] = {k: bytearray(v) for k, v in (partial or {}).items()}
        self._dirty: set[tuple[int, int]] = set()

    @staticmethod
    def partial_tiles_of(size: int) -> list[tuple[int, int, int]]:
        """(tile level, tile index, width) of every partial tile of a tree of ``size`` leaves."""
        out, t = [], 0
        while (size >> (TILE_HEIGHT * t)) > 0:
            count = size >> (TILE_HEIGHT * t)
            if count % TILE_WIDTH:
                out.append((t, count // TILE_WIDTH, count % TILE_WIDTH))
            t += 1
        return out

    def add(self, completed: Iterable[tuple[int, int, bytes]]) -> None:
        for level, index, h in completed:
            if level % TILE_HEIGHT:
                continue
            t = level // TILE_HEIGHT
            key = (t, index >> TILE_HEIGHT)
            buf = self._tiles.setdefault(key, bytearray())
            if len(buf) != (index % TILE_WIDTH) * 32:
                raise ValueError(f"node {level}/{index} out of order in tile {key}")
            buf += h
            self._dirty.add(key)

    def add_leaves(self, start: int, leaves: list[bytes]) -> None:
        """``add`` of the leaves ``start, start + 1, ...`` (level 0), a tile's run of hashes at a time."""
        i, n, join = 0, len(leaves), b"".join
        while i < n:
            index = start + i
            key = (0, index >> TILE_HEIGHT)
            take = min(n - i, TILE_WIDTH - index % TILE_WIDTH)
            buf = self._tiles.setdefault(key, bytearray())
            if len(buf) != (index % TILE_WIDTH) * 32:
                raise ValueError(f"node 0/{index} out of order in tile {key}")
            buf += join(leaves[i:i + take])
            self._dirty.add(key)
            i += take

    def take_dirty(self) -> dict[tuple[int, int], bytes]:
        """Tiles changed since the last call; full tiles are then forgotten (they never change)."""
        out = {k: bytes(self._tiles[k]) for k in self._dirty}
        for k, v in out.items():
            if len(v) == TILE_WIDTH * 32:
                del self._tiles[k]
        self._dirty.clear()
        return out

    def snapshot(self) -> TileBuilder:
        """An independent copy (appends to it do not touch this one)."""
        copy = TileBuilder()
        copy._tiles = {k: bytearray(v) for k, v in self._tiles.items()}
        copy._dirty = set(self._dirty)
        return copy
