"""Canonical bytes that issuers sign: RFC 8785 (JCS) behind a domain-separation prefix.

A certificate's signature covers its content, not its envelope: every field
except the event metadata (ids, times, source, aggregate_version) and the
signatures. The content is serialised with the JSON Canonicalization Scheme
(RFC 8785, through the maintained ``rfc8785`` package: sorted keys by UTF-16
code units, ECMAScript number formatting, no whitespace, UTF-8) and prefixed
with ``qi-stream/certificate/v1\\n`` so a signature over a certificate can never
be replayed as a signature over anything else (a tree head, another version).

Values are normalised first so the bytes do not depend on how an event
travelled: timestamps become UTC ISO 8601 with microseconds and a ``Z``
(Avro keeps microseconds and UTC; a JSON file may say ``+02:00``). JSON
rather than Avro binary, so the bytes do not depend on the schema version a
consumer reads with. Non-finite numbers cannot be canonicalised: they raise
:class:`CanonicalError`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import rfc8785

from events.models import CertificateIssued

CERTIFICATE_DOMAIN = b"qi-stream/certificate/v1\n"
_CONTENT = {"certificate_id", "certificate_kind", "administrative", "validity", "results"}


class CanonicalError(ValueError):
    """A value has no canonical JSON form (NaN, infinity, an unsupported type)."""


def _normalise(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON-compatible value (datetimes normalised to UTC)."""
    try:
        return rfc8785.dumps(_normalise(value))
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalError(str(exc)) from None


def certificate_payload(cert: CertificateIssued) -> bytes:
    """The exact bytes an issuer signs for ``cert``."""
    return CERTIFICATE_DOMAIN + canonical_json(cert.model_dump(mode="python", include=_CONTENT))
