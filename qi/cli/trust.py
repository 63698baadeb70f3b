"""``qi keys``, ``qi issuers``, ``qi certificates``: the trust registry and signed certificates.

Keys are files (``qi keys generate``); the registry and the certificates are
events (IssuerKeyRegistered/Revoked, CertificateIssued/Revoked/Superseded)
published to the log, where the validation worker judges them.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pydantic

from events.canonical import CanonicalError, certificate_payload
from events.models import (
    Accreditation,
    CertificateIssued,
    CertificateRevoked,
    CertificateSuperseded,
    IssuerKeyRegistered,
    IssuerKeyRevoked,
)
from events.signing import HybridKeyPair, HybridPublicKey, KeyFileError
from qi.cli._common import USER_ERRORS, fail, run
from qi.platform import Platform

LOG_KEY_NAME = "audit-log"


def _file_name(identifier: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", identifier)


def _when(value: str | None, option: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: {value!r} is not an ISO 8601 time")
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _publish(platform: Platform, event: Any) -> None:
    async def go() -> None:
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish(event)

    try:
        run(go())
    except USER_ERRORS as e:
        fail(str(e))
    click.echo(f"published {event.event_type} {event.key()} (event_id {event.event_id})")


def _invalid(source: str, err: pydantic.ValidationError) -> None:
    lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()]
    fail(f"{source} is not valid:\n" + "\n".join(lines))


# -- keys --------------------------------------------------------------------------------------

@click.group()
def keys() -> None:
    """Hybrid (Ed25519 + ML-DSA-65) signing keys as files."""


@keys.command("generate")
@click.option("--issuer", "issuer_id", help="issuer id the key signs for")
@click.option("--log", "for_log", is_flag=True, help="the audit log's tree-head signing key instead")
@click.option("--key-id", help="key id (default: <issuer>/<year>-1, or audit-log/<year>-1)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".qi/keys"),
              show_default=True, help="directory for the key files")
def keys_generate(issuer_id: str | None, for_log: bool, key_id: str | None, out_dir: Path) -> None:
    """Make a key pair: private keys as 0600 PKCS8 PEM files, the public key as JSON.

    The private files never leave OUT; register the public JSON with `qi issuers register`.
    """
    if bool(issuer_id) == for_log:
        fail("give exactly one of --issuer ID or --log")
    owner = LOG_KEY_NAME if for_log else issuer_id
    key_id = key_id or f"{owner}/{datetime.now(UTC).year}-1"
    pair = HybridKeyPair.generate(key_id)
    try:
        ed, pq, pub = pair.save(out_dir, _file_name(owner))
    except KeyFileError as e:
        fail(str(e))
    click.echo(f"key {key_id}\n  private Ed25519   {ed}\n  private ML-DSA-65 {pq}\n  public            {pub}")


# -- issuers -----------------------------------------------------------------------------------

@click.group()
def issuers() -> None:
    """The trust registry: which issuer keys may sign which certificate kinds."""


@issuers.command("register")
@click.option("--issuer", "issuer_id", required=True)
@click.option("--name", "issuer_name", required=True, help="the issuer's legal name")
@click.option("--public-key", "public_key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the .pub.json written by `qi keys generate`")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="certificate kind it is accredited for, e.g. calibration.pressure (repeatable)")
@click.option("--accreditation-body", default="unspecified", show_default=True)
@click.option("--accreditation-id", default="unspecified", show_default=True)
@click.option("--valid-from", help="ISO 8601 (default: now)")
@click.option("--valid-until", help="ISO 8601 (default: open)")
@click.option("--version", "version", type=click.IntRange(min=1), default=1, show_default=True,
              help="the issuer aggregate's version this event makes")
@click.pass_obj
def issuers_register(platform: Platform, issuer_id: str, issuer_name: str, public_key: Path, scopes: tuple[str, ...],
                     accreditation_body: str, accreditation_id: str, valid_from: str | None,
                     valid_until: str | None, version: int) -> None:
    """Publish IssuerKeyRegistered with the key and its accreditation scope."""
    try:
        pub = HybridPublicKey.load(public_key)
    except KeyFileError as e:
        fail(str(e))
    try:
        event = IssuerKeyRegistered(
            occurred_at=datetime.now(UTC), source="qi-cli", aggregate_version=version, issuer_id=issuer_id,
            issuer_name=issuer_name, key_id=pub.key_id, ed25519_public_key=pub.ed25519,
            ml_dsa_parameter_set=pub.parameter_set, ml_dsa_public_key=pub.ml_dsa_65,
            valid_from=_when(valid_from, "--valid-from"),
            valid_until=_when(valid_until, "--valid-until") if valid_until else None,
            accreditations=[Accreditation(body=accreditation_body, accreditation_id=accreditation_id,
                                          scope=list(scopes))],
        )
    except pydantic.ValidationError as e:
        _invalid("the registration", e)
    _publish(platform, event)


@issuers.command("revoke")
@click.option("--issuer", "issuer_id", required=True)
@click.option("--key-id", required=True)
@click.option("--reason", required=True)
@click.option("--effective-at", help="ISO 8601 (default: now); certificates issued from then on are invalid")
@click.option("--version", type=click.IntRange(min=1), required=True, help="the issuer aggregate's next version")
@click.pass_obj
def issuers_revoke(platform: Platform, issuer_id: str, key_id: str, reason: str, effective_at: str | None,
                   version: int) -> None:
    """Publish IssuerKeyRevoked."""
    when = _when(effective_at, "--effective-at")
    _publish(platform, IssuerKeyRevoked(occurred_at=datetime.now(UTC), source="qi-cli", aggregate_version=version,
                                        issuer_id=issuer_id, key_id=key_id, effective_at=when, reason=reason))


# -- certificates ------------------------------------------------------------------------------

@click.group()
def certificates() -> None:
    """Issue, revoke and supersede signed certificates."""


def _load_key(spec: Path) -> HybridKeyPair:
    """``DIR/NAME`` or ``DIR/NAME.pub.json`` (or either private PEM) -> the key pair."""
    name = spec.name
    for suffix in (".pub.json", ".ed25519.pem", ".mldsa65.pem"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return HybridKeyPair.load(spec.parent, name)


@certificates.command("issue")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="certificate JSON: certificate_id, certificate_kind, administrative, validity, results")
@click.option("--key", "key_spec", required=True, type=click.Path(path_type=Path),
              help="the issuer key: DIR/NAME as written by `qi keys generate` (or its .pub.json)")
@click.option("--dry-run", is_flag=True, help="sign and print the event, publish nothing")
@click.pass_obj
def certificates_issue(platform: Platform, path: Path, key_spec: Path, dry_run: bool) -> None:
    """Sign a certificate (RFC 8785 payload, Ed25519 + ML-DSA-65) and publish CertificateIssued."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"{path}: not JSON: {e}")
    if not isinstance(doc, dict):
        fail(f"{path}: expected a JSON object")
    try:
        pair = _load_key(key_spec)
    except KeyFileError as e:
        fail(str(e))
    doc = {"occurred_at": datetime.now(UTC).isoformat(), "source": "qi-cli", "aggregate_version": 1, **doc,
           "signatures": []}
    try:
        cert = CertificateIssued.model_validate(doc)
    except pydantic.ValidationError as e:
        _invalid(str(path), e)
    try:
        cert = cert.model_copy(update={"signatures": pair.sign(certificate_payload(cert))})
    except CanonicalError as e:
        fail(f"{path}: {e}")
    if dry_run:
        click.echo(cert.model_dump_json())
        return
    _publish(platform, cert)


@certificates.command("revoke")
@click.option("--certificate", "certificate_id", required=True)
@click.option("--reason", required=True)
@click.option("--by", "revoked_by", required=True, help="who revokes (issuer id)")
@click.option("--version", type=click.IntRange(min=2), required=True, help="the certificate's next version")
@click.pass_obj
def certificates_revoke(platform: Platform, certificate_id: str, reason: str, revoked_by: str, version: int) -> None:
    """Publish CertificateRevoked."""
    _publish(platform, CertificateRevoked(occurred_at=datetime.now(UTC), source="qi-cli", aggregate_version=version,
                                          certificate_id=certificate_id, revoked_by=revoked_by, reason=reason))


@certificates.command("supersede")
@click.option("--certificate", "certificate_id", required=True, help="the certificate being replaced")
@click.option("--by", "superseded_by", required=True, help="the id of the newer certificate")
@click.option("--reason")
@click.option("--version", type=click.IntRange(min=2), required=True, help="the old certificate's next version")
@click.pass_obj
def certificates_supersede(platform: Platform, certificate_id: str, superseded_by: str, reason: str | None,
                           version: int) -> None:
    """Publish CertificateSuperseded."""
    _publish(platform, CertificateSuperseded(
        occurred_at=datetime.now(UTC), source="qi-cli", aggregate_version=version, certificate_id=certificate_id,
        superseded_by=superseded_by, reason=reason))
