"""Canonical bytes that issuers sign.

A certificate's signature covers its content, not its envelope: every field
except the event metadata (ids, times, source) and the signatures, as JSON
with sorted keys, no whitespace, UTF-8, bytes in base64 and timestamps in ISO
8601, behind a domain-separation prefix. JSON rather than Avro binary, so the
bytes do not depend on the schema version a consumer reads with. This is the
one place to change the definition (certificate validation will own it).
"""

from __future__ import annotations

import json

from events.models import CertificateIssued

CERTIFICATE_DOMAIN = b"qi-stream/certificate/v1\n"
_CONTENT = {"certificate_id", "certificate_kind", "administrative", "validity", "results"}


def certificate_payload(cert: CertificateIssued) -> bytes:
    content = cert.model_dump(mode="json", include=_CONTENT)
    return CERTIFICATE_DOMAIN + json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
