"""The dashboard's in-browser proof checker (static/proof.js) in real headless Chromium, against
every RFC 6962 vector and verifier probe of ../shared/conformance (transparency-dev/merkle), and
against proofs and checkpoints made by our own writer and signer."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.signing import HybridKeyPair
from streams.audit.checkpoint import sign_head
from streams.audit.compact import CompactRange
from streams.audit.hashing import leaf_hash
from streams.audit.tiles import TileBuilder, TileReader
from tests.api.browser import chromium, needs_chromium

STATIC = Path(__file__).resolve().parents[2] / "qi" / "api" / "web" / "static"
VECTORS = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "rfc6962" / "vectors.json"
if not VECTORS.exists():
    VECTORS = Path("/work/shared/conformance/rfc6962/vectors.json")

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def static_url() -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(STATIC)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def page(static_url):
    for driver in chromium():
        driver.get(f"{static_url}/favicon.svg")   # any page of the origin: a secure context (loopback)
        yield driver


RUN = """
const [cases, done] = [arguments[0], arguments[arguments.length - 1]];
import("/proof.js").then(async (p) => {
  const hex = (s) => Uint8Array.from((s.match(/../g) || []).map((b) => parseInt(b, 16)));
  const out = [];
  for (const c of cases) {
    out.push(await p.verifyInclusion(c.leaf_index, c.tree_size, hex(c.leaf_hash_hex),
                                     c.proof_hex.map(hex), hex(c.root_hex)));
  }
  done(out);
}).catch((e) => done(String(e)));
"""


def test_every_rfc6962_inclusion_vector_and_probe(page):
    v = json.loads(VECTORS.read_text())
    cases = [{**p, "want": True} for p in v["inclusion_proofs"]]
    for p in v["verifier_probes"]["inclusion"]:
        # indices as strings: 2^64 - 1 does not survive a JavaScript number
        cases.append({"leaf_index": str(p["leafIdx"]), "tree_size": str(p["treeSize"]), "leaf_hash_hex": p["leafHash_hex"],
                      "proof_hex": p["proof_hex"], "root_hex": p["root_hex"], "want": not p["wantErr"], "desc": p["file"]})
    got = page.execute_async_script(RUN, cases)
    assert isinstance(got, list), got
    wrong = [(c.get("desc"), c["want"]) for c, ok in zip(cases, got) if ok != c["want"]]
    assert not wrong, wrong
    assert sum(got) == sum(c["want"] for c in cases) >= 7 and len(cases) > 60


CHECK = """
const [proof, key, done] = arguments;
import("/proof.js").then(async (p) => done(await p.checkInclusion(proof, key))).catch((e) => done(String(e)));
"""


def _tree(n: int):
    cr, tb, store = CompactRange(), TileBuilder(), {}
    datas = [f"leaf-{i}".encode() for i in range(n)]
    for d in datas:
        done: list = []
        cr.append(leaf_hash(d), done)
        tb.add(done)
        store.update(tb.take_dirty())
    return datas, cr, TileReader(lambda wanted: {k: store[k] for k in wanted if k in store})


def test_our_writer_s_proofs_and_signed_checkpoints(page, tmp_path):
    keys = HybridKeyPair.generate("test-log")
    pub = keys.public
    origin = "qi-stream.test/audit"
    datas, cr, reader = _tree(300)
    head = sign_head(keys, origin, 300, cr.root())
    key = {"ed25519": base64.b64encode(pub.ed25519).decode()}
    b64 = lambda b: base64.b64encode(b).decode()
    for i in (0, 1, 137, 255, 256, 299):
        proof = {"leaf_index": i, "tree_size": 300, "leaf_hash": b64(leaf_hash(datas[i])),
                 "leaf_data": b64(datas[i]), "hashes": [b64(h) for h in reader.inclusion_proof(i, 300)],
                 "checkpoint": {"text": head.note}}
        r = page.execute_async_script(CHECK, proof, key)
        assert r["ok"] is True and r["ed25519"] is True and r["leafData"] is True, (i, r)
        assert r["computedRoot"] == r["checkpointRoot"] == b64(cr.root())

    good = {"leaf_index": 5, "tree_size": 300, "leaf_hash": b64(leaf_hash(datas[5])), "leaf_data": b64(datas[5]),
            "hashes": [b64(h) for h in reader.inclusion_proof(5, 300)], "checkpoint": head.note}
    other = sign_head(HybridKeyPair.generate("test-log"), origin, 300, cr.root())
    forged_root = sign_head(keys, origin, 300, bytes(32))
    tampered = {
        "another leaf's data": {**good, "leaf_data": b64(datas[6])},
        "a flipped path hash": {**good, "hashes": [b64(bytes([base64.b64decode(good["hashes"][0])[0] ^ 1])
                                                        + base64.b64decode(good["hashes"][0])[1:])] + good["hashes"][1:]},
        "the wrong index": {**good, "leaf_index": 4},
        "a checkpoint of another size": {**good, "tree_size": 299},
        "a checkpoint signed by another key": {**good, "checkpoint": other.note},
        "a checkpoint with another root": {**good, "checkpoint": forged_root.note},
        "a note with its root edited": {**good, "checkpoint": head.note.replace(
            head.note.splitlines()[2], b64(bytes(32)))},
    }
    for what, proof in tampered.items():
        r = page.execute_async_script(CHECK, proof, key)
        assert r["ok"] is False and r["reason"], (what, r)
    # the edited root breaks the signature, and without the key the root comparison alone catches it
    r = page.execute_async_script(CHECK, tampered["a note with its root edited"], None)
    assert r["ok"] is False and "differs" in r["reason"]
