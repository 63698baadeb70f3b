"""``qi audit ...``: proofs, checkpoints, whole-log verification and export for auditors."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qi.cli._common import USER_ERRORS, fail, run
from qi.platform import Platform
from streams.audit.errors import AuditError
from streams.audit.verifier import VerificationError

ERRORS = (*USER_ERRORS, AuditError)


def _public_key(platform: Platform, path: str | None):
    from events.signing import HybridPublicKey, KeyFileError

    p = Path(path) if path else platform.log_key_dir() / f"{platform.settings.audit.key_name}.pub.json"
    try:
        return HybridPublicKey.load(p)
    except (KeyFileError, OSError, ValueError) as e:
        fail(f"cannot read the log's public key {p}: {e}")


async def _with_store(platform: Platform, fn):
    store = platform.audit_store()
    await store.start()
    try:
        return await fn(store)
    finally:
        await store.close()


@click.group()
def audit() -> None:
    """The transparency log: prove, verify, checkpoint, export (see docs/audit.md)."""


@audit.command()
@click.argument("event_id")
@click.option("--out", type=click.Path(dir_okay=False), help="write the proof here instead of stdout")
@click.pass_obj
def prove(platform: Platform, event_id: str, out: str | None) -> None:
    """The inclusion proof of EVENT_ID against the latest signed checkpoint (JSON)."""
    from streams.audit.prover import inclusion_document

    try:
        doc = run(_with_store(platform, lambda s: inclusion_document(s, event_id)))
    except ERRORS as e:
        fail(str(e))
    text = json.dumps(doc, indent=2)
    if out:
        Path(out).write_text(text + "\n")
        click.echo(f"proof of leaf {doc['leaf_index']} at size {doc['tree_size']} written to {out}")
    else:
        click.echo(text)


@audit.command()
@click.argument("old_size", type=int)
@click.argument("new_size", type=int)
@click.pass_obj
def consistency(platform: Platform, old_size: int, new_size: int) -> None:
    """The consistency proof from OLD_SIZE to NEW_SIZE (JSON)."""
    from streams.audit.prover import consistency_document

    try:
        doc = run(_with_store(platform, lambda s: consistency_document(s, old_size, new_size)))
    except ERRORS as e:
        fail(str(e))
    click.echo(json.dumps(doc, indent=2))


@audit.command("verify-proof")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False),
              help="the log's public key JSON [default: <key dir>/log.pub.json]")
@click.pass_obj
def verify_proof(platform: Platform, file: str, public_key: str | None) -> None:
    """Check a proof file offline, with only the log's public key. Exit 1 if it does not verify."""
    from streams.audit.verifier import verify_proof_document

    pub = _public_key(platform, public_key)
    try:
        doc = json.loads(Path(file).read_text())
        click.echo(verify_proof_document(doc, pub))
    except (VerificationError, KeyError, ValueError) as e:
        reason = getattr(e, "reason", type(e).__name__)
        click.secho(f"FAILED ({reason}): {e}", fg="red", err=True)
        raise SystemExit(1) from None


@audit.command()
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="the report as JSON")
@click.pass_obj
def verify(platform: Platform, public_key: str | None, as_json: bool) -> None:
    """Re-read the source and audit topics, recompute every leaf and signed head; name the first divergence."""
    from streams.audit.logcheck import verify_log

    pub = _public_key(platform, public_key)
    a = platform.settings.audit

    async def go():
        serde = await platform.serde()
        return await verify_log(
            bootstrap=platform.endpoints().kafka, serde=serde, prefix=platform.topics.prefix,
            audit_topic=platform.topics.topic("audit"),
            source_topics=[platform.topics.topic(f) for f in a.families], log_id=a.log_id, public_key=pub)

    try:
        report = run(go())
    except ERRORS as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({
            "ok": report.ok, "leaves": report.leaves, "heads": report.heads,
            "source_records": report.source_records, "not_yet_logged": report.not_yet_logged,
            "seconds": round(report.seconds, 3),
            "divergences": [d.__dict__ for d in report.divergences],
        }, indent=2))
    else:
        click.echo(f"{report.leaves} leaves, {report.heads} signed heads, {report.source_records} source records "
                   f"read in {report.seconds:.1f}s; {report.not_yet_logged} not yet logged")
        if report.ok:
            click.echo("OK: every leaf and every signed head recomputed and verified")
        else:
            first = report.first
            click.secho(f"FIRST DIVERGENCE: {first.kind} at {first.where()}: {first.detail}", fg="red")
            for d in report.divergences[1:]:
                click.echo(f"  also: {d.kind} at {d.where()}: {d.detail}")
    raise SystemExit(0 if report.ok else 1)


@audit.command()
@click.pass_obj
def checkpoint(platform: Platform) -> None:
    """Print the latest signed checkpoint (a C2SP signed note)."""
    try:
        head = run(_with_store(platform, lambda s: s.latest_head()))
    except ERRORS as e:
        fail(str(e))
    if head is None:
        fail("no signed tree head yet")
    click.echo(head.note, nl=False)


@audit.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="directory to write")
@click.pass_obj
def export(platform: Platform, out: str) -> None:
    """Write checkpoints, tiles and the public key as static files (tlog-tiles layout)."""
    from streams.audit.export import export_log

    try:
        summary = run(_with_store(platform, lambda s: export_log(
            s, Path(out), platform.log_key_dir() / f"{platform.settings.audit.key_name}.pub.json")))
    except ERRORS as e:
        fail(str(e))
    click.echo(summary)
