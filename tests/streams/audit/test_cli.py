"""`qi audit ...` as an auditor runs it: prove, verify-proof, consistency, checkpoint, verify, export."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from streams.audit.verifier import parse_checkpoint
from tests.conftest import ROOT
from tests.fixtures import example_event
from tests.streams.audit.helpers import audit_platform, audit_worker, wait_for_size
from tests.streams.helpers import readings

pytestmark = pytest.mark.stack


def test_audit_commands(platform, catalog, stack_env, tmp_path):
    keys = tmp_path / "keys"
    p = audit_platform(platform, keys, head_every_entries=100, head_every_s=1.0)
    certs = [example_event(catalog, "CertificateIssued", n) for n in range(5)]
    events = readings(400, sensors=4) + certs

    async def build():
        await p.ensure_topics()
        serde = await p.serde()
        async with p.publisher(serde) as pub:
            await pub.publish_many(events)
        async with audit_worker(p) as proc:
            await wait_for_size(proc, len(events))
            await asyncio.sleep(1.5)

    asyncio.run(build())
    env = dict(stack_env) | {"QI_KAFKA_TOPIC_PREFIX": p.settings.kafka.topic_prefix,
                             "QI_AUDIT_LOG_ID": p.settings.audit.log_id, "QI_AUDIT_KEY_DIR": str(keys)}

    def qi(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "qi", "audit", *args], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        if ok:
            assert out.returncode == 0, (args, out.stdout[-1000:], out.stderr[-2000:])
        return out

    proof = tmp_path / "proof.json"
    qi("prove", str(certs[2].event_id), "--out", str(proof))
    doc = json.loads(proof.read_text())
    assert doc["tree_size"] == len(events) and doc["source"]["event_type"] == "CertificateIssued"
    assert "OK: leaf" in qi("verify-proof", str(proof), "--public-key", str(keys / "audit-log.pub.json")).stdout
    doc["hashes"][0] = doc["hashes"][1]
    proof.write_text(json.dumps(doc))
    bad = qi("verify-proof", str(proof), ok=False)
    assert bad.returncode == 1 and "root_mismatch" in bad.stderr

    note = qi("checkpoint").stdout
    cp = parse_checkpoint(note)
    assert cp.origin == p.settings.audit.log_id and cp.size == len(events) and len(cp.signatures) == 2

    cons = json.loads(qi("consistency", "100", "300").stdout)
    assert cons["old_size"] == 100 and cons["new_size"] == 300 and cons["hashes"]
    cfile = tmp_path / "cons.json"
    cfile.write_text(json.dumps(cons))
    assert "extends size 100" in qi("verify-proof", str(cfile)).stdout

    verify = qi("verify")
    assert "OK: every leaf" in verify.stdout and f"{len(events)} leaves" in verify.stdout

    out = tmp_path / "export"
    qi("export", "--out", str(out))
    assert (out / "checkpoint").read_text() == note
    assert (out / "log.pub.json").exists() and (out / "tile" / "0" / "000").stat().st_size == 256 * 32
    assert (out / "tile" / "0" / "001.p" / str(len(events) - 256)).exists()

    newkeys = tmp_path / "newkeys"
    gen = subprocess.run([sys.executable, "-m", "qi", "keys", "generate", "--log", "--out", str(newkeys)], cwd=ROOT,
                         env=env | {"QI_AUDIT_KEY_DIR": str(newkeys)}, capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    assert (newkeys / "audit-log.pub.json").exists()
    assert all((f.stat().st_mode & 0o777) == 0o600 for f in newkeys.glob("*.pem")) and len(list(newkeys.glob("*.pem"))) == 2

    missing = qi("prove", "00000000-0000-0000-0000-000000000000", ok=False)
    assert missing.returncode == 2 and "not in log" in missing.stderr
