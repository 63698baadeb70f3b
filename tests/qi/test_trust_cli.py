"""`qi keys`, `qi issuers`, `qi certificates` as users run them."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from events.canonical import certificate_payload
from events.models import CertificateIssued, IssuerKeyRegistered
from events.signing import HybridPublicKey, verify_hybrid

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "certificate.json"


def qi(*args, env=None):
    return subprocess.run([sys.executable, "-m", "qi", *args], env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_keys_generate_writes_private_files_0600_and_never_overwrites(tmp_path) -> None:
    r = qi("keys", "generate", "--issuer", "lab-x", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert files["lab-x.ed25519.pem"] == 0o600 and files["lab-x.mldsa65.pem"] == 0o600
    assert HybridPublicKey.load(tmp_path / "lab-x.pub.json").key_id.startswith("lab-x/")
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    again = qi("keys", "generate", "--issuer", "lab-x", "--out", str(tmp_path))
    assert again.returncode == 2 and "lab-x.ed25519.pem" in again.stderr and "overwrite" in again.stderr
    log = qi("keys", "generate", "--log", "--out", str(tmp_path))
    assert log.returncode == 0 and (tmp_path / "audit-log.pub.json").exists()
    both = qi("keys", "generate", "--log", "--issuer", "x", "--out", str(tmp_path))
    assert both.returncode == 2 and "exactly one" in both.stderr


def test_certificates_issue_signs_the_canonical_payload(tmp_path) -> None:
    assert qi("keys", "generate", "--issuer", "lab-example", "--out", str(tmp_path)).returncode == 0
    r = qi("certificates", "issue", "--file", str(EXAMPLE), "--key", str(tmp_path / "lab-example"), "--dry-run")
    assert r.returncode == 0, r.stderr
    cert = CertificateIssued.model_validate_json(r.stdout)
    pub = HybridPublicKey.load(tmp_path / "lab-example.pub.json")
    assert verify_hybrid(pub, certificate_payload(cert), cert.signatures).ok


def test_certificates_issue_names_the_file_and_field_in_errors(tmp_path) -> None:
    qi("keys", "generate", "--issuer", "lab-example", "--out", str(tmp_path))
    doc = json.loads(EXAMPLE.read_text())
    del doc["validity"]["valid_until"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = qi("certificates", "issue", "--file", str(bad), "--key", str(tmp_path / "lab-example"), "--dry-run")
    assert r.returncode == 2 and str(bad) in r.stderr and "validity.valid_until" in r.stderr
    missing_key = qi("certificates", "issue", "--file", str(EXAMPLE), "--key", str(tmp_path / "nobody"))
    assert missing_key.returncode == 2 and "nobody.pub.json" in missing_key.stderr
    bad.write_text("{not json")
    r = qi("certificates", "issue", "--file", str(bad), "--key", str(tmp_path / "lab-example"), "--dry-run")
    assert r.returncode == 2 and str(bad) in r.stderr and "not JSON" in r.stderr


@pytest.mark.stack
def test_register_and_issue_publish_events_that_verify(stack_env, platform, topic_prefix, tmp_path) -> None:
    env = {**stack_env, "QI_KAFKA_TOPIC_PREFIX": topic_prefix}
    asyncio.run(platform.ensure_topics())
    assert qi("keys", "generate", "--issuer", "lab-example", "--out", str(tmp_path)).returncode == 0
    r = qi("issuers", "register", "--issuer", "lab-example", "--name", "Example Lab", "--public-key",
           str(tmp_path / "lab-example.pub.json"), "--scope", "calibration.pressure", env=env)
    assert r.returncode == 0, r.stderr
    r = qi("certificates", "issue", "--file", str(EXAMPLE), "--key", str(tmp_path / "lab-example"), env=env)
    assert r.returncode == 0, r.stderr
    r = qi("certificates", "revoke", "--certificate", "DCC-2026-0100", "--reason", "drift", "--by", "lab-example",
           "--version", "2", env=env)
    assert r.returncode == 0, r.stderr

    async def read(family):
        serde = await platform.serde()
        async with platform.reader(serde, [family]) as reader:
            return [rec.decoded.to_event() for rec in await reader.read_to_end()]
    [reg] = asyncio.run(read("issuers"))
    cert, revoked = asyncio.run(read("certificates"))
    assert isinstance(reg, IssuerKeyRegistered) and reg.accreditations[0].scope == ["calibration.pressure"]
    pub = HybridPublicKey(reg.key_id, reg.ed25519_public_key, reg.ml_dsa_public_key)
    assert verify_hybrid(pub, certificate_payload(cert), cert.signatures).ok
    assert revoked.event_type == "CertificateRevoked" and revoked.aggregate_version == 2
