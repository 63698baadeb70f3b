"""The end of ``qi demo``: log the sample events, prove one certificate's inclusion, verify it."""

from __future__ import annotations

import asyncio
import json
import time

import click

from events.base import Event
from qi.config import AuditSettings
from qi.platform import Platform


async def prove_a_certificate(platform: Platform, events: list[Event], *, timeout_s: float = 300.0) -> bool:
    """Run the audit worker in-process until a certificate is covered by a signed head; prove, verify."""
    from events.signing import HybridKeyPair, HybridPublicKey
    from streams.audit.prover import inclusion_document
    from streams.audit.verifier import VerificationError, verify_proof_document

    cert = next(e for e in events if e.event_type == "CertificateIssued")
    settings = platform.settings.model_copy(update={"audit": platform.settings.audit.model_copy(
        update={"head_every_s": 1.0})})
    p = Platform(settings)
    a: AuditSettings = settings.audit
    key_dir = p.log_key_dir()
    if not (key_dir / f"{a.key_name}.pub.json").exists():
        HybridKeyPair.generate(key_id=f"{a.log_id}/demo").save(key_dir, a.key_name)
        click.echo(f"\ngenerated the audit log's key pair in {key_dir} (`qi keys generate --log`)")
    serde = await p.serde()
    processor = p.audit_processor(serde)
    runner = p.batch_runner(processor, serde)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    store = p.audit_store()
    await store.start()
    doc = None
    click.echo("\nappending every event of this deployment to the audit log (catching up if it has history)...")
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s and not task.done():
            entry = await store.entry_for_event(str(cert.event_id))
            head = await store.latest_head()
            if entry is not None and head is not None and head.tree_size > entry.leaf_index:
                doc = await inclusion_document(store, str(cert.event_id))
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
        await store.close()
    if doc is None:
        click.secho("the audit log did not cover the certificate in time", fg="red")
        return False
    click.echo(f"\naudit log {doc['log_id']}: certificate {cert.certificate_id} is leaf {doc['leaf_index']} "
               f"of {doc['tree_size']}; inclusion proof ({len(doc['hashes'])} hashes):")
    click.echo(json.dumps({k: doc[k] for k in ("leaf_index", "tree_size", "leaf_hash", "hashes")}, indent=2))
    click.echo(doc["checkpoint"], nl=False)
    try:
        verdict = verify_proof_document(doc, HybridPublicKey.load(key_dir / f"{a.key_name}.pub.json"))
    except VerificationError as e:
        click.secho(f"proof FAILED: {e}", fg="red")
        return False
    click.echo(f"verified offline with the log's public key (Ed25519 and ML-DSA-65): {verdict}")
    return True
