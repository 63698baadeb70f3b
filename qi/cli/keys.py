"""``qi keys generate --log``: key pairs (Ed25519 + ML-DSA-65) kept as files, never in logs."""

from __future__ import annotations

import click

from qi.cli._common import fail
from qi.platform import Platform


@click.group()
def keys() -> None:
    """Hybrid Ed25519 + ML-DSA-65 key pairs."""


@keys.command()
@click.option("--log", "for_log", is_flag=True, required=True,
              help="the audit log's signing key pair (QI_AUDIT_KEY_DIR / QI_AUDIT_KEY_NAME)")
@click.option("--key-id", default=None, help="key id recorded with every signature [default: <log id>/<date>]")
@click.pass_obj
def generate(platform: Platform, for_log: bool, key_id: str | None) -> None:
    """Generate a key pair; private keys are written mode 0600 and never overwritten."""
    from datetime import UTC, datetime

    from events.signing import HybridKeyPair, KeyFileError

    a = platform.settings.audit
    key_id = key_id or f"{a.log_id}/{datetime.now(UTC):%Y-%m-%d}"
    try:
        HybridKeyPair.generate(key_id=key_id).save(platform.log_key_dir(), a.key_name)
    except (KeyFileError, OSError) as e:
        fail(str(e))
    pub = platform.log_key_dir() / f"{a.key_name}.pub.json"
    click.echo(f"log key pair {key_id!r} written to {platform.log_key_dir()}; public key: {pub}")
