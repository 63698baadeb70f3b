"""Every RFC 6962 vector and every verifier probe of ../shared/conformance/rfc6962 through our verifier.

The writer (compact range + tiles) must produce the same roots and proofs as the reference vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.audit.compact import CompactRange
from streams.audit.hashing import EMPTY_ROOT, leaf_hash, node_hash
from streams.audit.tiles import (
    TileBuilder,
    TileNodes,
    TileReader,
    inclusion_ranges,
    perfect_subtrees,
    proof_tiles,
    tile_of,
)
from streams.audit.verifier import (
    RootAccumulator,
    VerificationError,
    merkle_root,
    root_from_levels,
    tree_levels,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "rfc6962" / "vectors.json"
if not VECTORS.exists():  # worktrees live in /work/wt/NAME, the main checkout in /work/main
    VECTORS = Path("/work/shared/conformance/rfc6962/vectors.json")
V = json.loads(VECTORS.read_text())
H = bytes.fromhex


def _tree(leaves: list[bytes]) -> tuple[CompactRange, TileReader]:
    cr, tb, store = CompactRange(), TileBuilder(), {}
    for leaf in leaves:
        done: list = []
        cr.append(leaf, done)
        tb.add(done)
        store.update(tb.take_dirty())
    return cr, TileReader(lambda wanted: {k: store[k] for k in wanted if k in store})


def test_hasher_known_answers():
    for case in V["hasher_known_answers"]:
        kind = case["kind"]
        if kind == "empty_root":
            got = EMPTY_ROOT
        elif kind == "leaf":
            got = leaf_hash(H(case["data_hex"]))
        else:
            got = node_hash(H(case["left_hex"]), H(case["right_hex"]))
        assert got.hex() == case["expected_hex"], case["desc"]


def test_leaf_hashes_and_roots_from_the_writer_and_the_verifier():
    leaves = [leaf_hash(H(x)) for x in V["leaf_inputs_hex"]]
    assert [h.hex() for h in leaves] == V["leaf_hashes_hex"]
    for r in V["roots"]:
        n = r["tree_size"]
        cr, reader = _tree(leaves[:n])
        assert cr.root().hex() == r["root_hex"]
        assert merkle_root(leaves[:n]).hex() == r["root_hex"]
        if n:
            assert reader.root(n).hex() == r["root_hex"]


def test_roots_a_level_at_a_time_and_by_accumulator():
    """verify builds the tree a level at a time and reads every head's root from it; its leaf-by-leaf
    check uses the accumulator: both give the vectors' roots for every prefix of one tree."""
    leaves = [leaf_hash(H(x)) for x in V["leaf_inputs_hex"]]
    levels = tree_levels(leaves)
    acc = RootAccumulator()
    want = {r["tree_size"]: r["root_hex"] for r in V["roots"]}
    assert root_from_levels(levels, 0) == acc.root() == EMPTY_ROOT
    for n, leaf in enumerate(leaves, 1):
        acc.add(leaf)
        assert root_from_levels(levels, n) == acc.root()
        if n in want:
            assert acc.root().hex() == want[n]
    many = [leaf_hash(i.to_bytes(4, "big")) for i in range(300)]
    levels, acc = tree_levels(many), RootAccumulator()
    for n, leaf in enumerate(many, 1):
        acc.add(leaf)
        assert root_from_levels(levels, n) == acc.root()
    with pytest.raises(ValueError):
        root_from_levels(levels, 301)


def test_proof_tiles_name_every_tile_an_inclusion_proof_reads():
    """``prove`` fetches proof_tiles(index, size) with the entry, in one query; it must be enough."""
    import random

    def reads(i, n):
        return {tile_of(lvl, x)[:2] for lo, hi in inclusion_ranges(i, n) for lvl, x in perfect_subtrees(lo, hi)}

    for n in range(1, 160):
        for i in range(n):
            assert reads(i, n) <= proof_tiles(i, n), (i, n)
    rng = random.Random(6962)
    for _ in range(1500):
        n = rng.choice([rng.randint(1, 70_000), rng.randint(1, 3_000_000), rng.randint(1, 1 << 40)])
        i = rng.randrange(n)
        assert reads(i, n) <= proof_tiles(i, n), (i, n)


def test_cached_tile_nodes_give_the_same_proofs():
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(70_000)]
    cr = CompactRange()
    tb, store = TileBuilder(), {}
    for leaf in leaves:
        done: list = []
        cr.append(leaf, done)
        tb.add(done)
        store.update(tb.take_dirty())
    fetch = lambda wanted: {k: store[k] for k in wanted if k in store}  # noqa: E731
    plain, cached = TileReader(fetch), TileReader(fetch, TileNodes(capacity=8))
    levels = tree_levels(leaves)
    assert root_from_levels(levels, 70_000) == cr.root()
    for i in list(range(0, 70_000, 997)) + [69_999]:
        for n in (i + 1, 65_536, 70_000):
            if i < n:
                proof = cached.inclusion_proof(i, n)
                assert proof == plain.inclusion_proof(i, n)
                verify_inclusion(i, n, leaves[i], proof, root_from_levels(levels, n))


def test_inclusion_vectors():
    leaves = [leaf_hash(H(x)) for x in V["leaf_inputs_hex"]]
    _, reader = _tree(leaves)
    for p in V["inclusion_proofs"]:
        proof = [H(x) for x in p["proof_hex"]]
        assert [h.hex() for h in reader.inclusion_proof(p["leaf_index"], p["tree_size"])] == p["proof_hex"]
        verify_inclusion(p["leaf_index"], p["tree_size"], H(p["leaf_hash_hex"]), proof, H(p["root_hex"]))


def test_consistency_vectors():
    leaves = [leaf_hash(H(x)) for x in V["leaf_inputs_hex"]]
    _, reader = _tree(leaves)
    for p in V["consistency_proofs"]:
        proof = [H(x) for x in p["proof_hex"]]
        assert [h.hex() for h in reader.consistency_proof(p["size1"], p["size2"])] == p["proof_hex"]
        verify_consistency(p["size1"], p["size2"], proof, H(p["root1_hex"]), H(p["root2_hex"]))


def _probe_ids(kind: str) -> list:
    """Every probe: the non-policy ones are RFC 6962; the 11 policy ones follow transparency-dev's
    current policy (32-byte leaf hashes, no proof from size 0), which our verifier adopts."""
    return [pytest.param(p, id=p["file"]) for p in V["verifier_probes"][kind]]


@pytest.mark.parametrize("probe", _probe_ids("inclusion"))
def test_inclusion_probe(probe):
    args = (probe["leafIdx"], probe["treeSize"], H(probe["leafHash_hex"]),
            [H(x) for x in probe["proof_hex"]], H(probe["root_hex"]))
    if probe["wantErr"]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", _probe_ids("consistency"))
def test_consistency_probe(probe):
    args = (probe["size1"], probe["size2"], [H(x) for x in probe["proof_hex"]],
            H(probe["root1_hex"]), H(probe["root2_hex"]))
    if probe["wantErr"]:
        with pytest.raises(VerificationError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_probe_counts():
    """Guard against a silently empty parametrisation: 98 + 98 probes, 11 of them policy."""
    probes = V["verifier_probes"]
    policy = [p for k in ("inclusion", "consistency") for p in probes[k] if "policy_dependent" in p]
    assert len(probes["inclusion"]) == 98 and len(probes["consistency"]) == 98
    assert len(policy) == 11


@pytest.mark.parametrize("size", [1, 2, 3, 7, 255, 256, 257, 1000, 65537])
def test_writer_proofs_verify_for_every_shape(size):
    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
    cr, reader = _tree(leaves)
    root = cr.root()
    assert reader.root(size) == root == merkle_root(leaves)
    step = max(1, size // 37)
    for i in list(range(0, size, step)) + [size - 1]:
        verify_inclusion(i, size, leaves[i], reader.inclusion_proof(i, size), root)
        m = i + 1
        verify_consistency(m, size, reader.consistency_proof(m, size), merkle_root(leaves[:m]), root)
    with pytest.raises(VerificationError):
        verify_inclusion(0, size, leaves[-1] if size > 1 else bytes(32), reader.inclusion_proof(0, size), root)
