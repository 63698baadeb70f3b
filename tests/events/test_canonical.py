"""RFC 8785 canonical bytes: the RFC's own examples, and what a certificate signs."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest

from events.canonical import CERTIFICATE_DOMAIN, CanonicalError, canonical_json, certificate_payload
from qi.samples import sample_events


def test_rfc8785_section_3_2_2_example() -> None:
    # RFC 8785 section 3.2.2, input and output as printed in the RFC.
    source = r'''{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }'''
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)) == expected.encode()


def test_rfc8785_section_3_2_3_sorting_by_utf16_code_units() -> None:
    source = {
        "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(source)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(("ieee", "text"), [
    # RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text.
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("41b3de4355555555", "333333333.3333333"),
])
def test_rfc8785_appendix_b_numbers(ieee: str, text: str) -> None:
    value = struct.unpack(">d", bytes.fromhex(ieee))[0]
    assert canonical_json(value) == text.encode()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_have_no_canonical_form(bad: float) -> None:
    with pytest.raises(CanonicalError):
        canonical_json({"value": bad})


def _cert():
    return next(e for e in sample_events(readings_per_sensor=0) if e.event_type == "CertificateIssued")


def test_certificate_payload_is_prefixed_jcs_of_the_content_only() -> None:
    cert = _cert()
    payload = certificate_payload(cert)
    assert payload.startswith(CERTIFICATE_DOMAIN)
    body = json.loads(payload[len(CERTIFICATE_DOMAIN):])
    assert set(body) == {"certificate_id", "certificate_kind", "administrative", "validity", "results"}
    # Envelope changes do not change the signed bytes; content changes do.
    moved = cert.model_copy(update={"source": "elsewhere", "occurred_at": cert.occurred_at + timedelta(days=1),
                                    "signatures": []})
    assert certificate_payload(moved) == payload
    assert certificate_payload(cert.model_copy(update={"certificate_kind": "calibration.mass"})) != payload


def test_certificate_payload_does_not_depend_on_the_timezone_offset() -> None:
    cert = _cert()
    plus2 = timezone(timedelta(hours=2))
    shifted = cert.model_copy(update={"validity": cert.validity.model_copy(update={
        "valid_from": cert.validity.valid_from.astimezone(plus2)})})
    assert certificate_payload(shifted) == certificate_payload(cert)
    assert b'"valid_from":"' + cert.validity.valid_from.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode() \
        in certificate_payload(cert)


def _reference(value):
    """The ``rfc8785`` package on the same value (datetimes normalised as canonical_json does)."""
    import rfc8785

    def norm(v):
        if isinstance(v, datetime):
            return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        return v

    return rfc8785.dumps(norm(value))


_CHARS = ["a", "Z", "0", " ", '"', "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\u0080",
          "\u00f6", "\u2028", "\u20ac", "\ud7ff", "\ue000", "\ufb33", "\uffff", "\U0001f600", "\U0010ffff"]


def _random_value(rnd, depth=0):
    kind = rnd.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rnd.choice([None, True, False])
    if kind == 1:
        return rnd.choice([0, 1, -1, 2**53 - 1, -(2**53 - 1), rnd.randrange(-10**15, 10**15)])
    if kind == 2:  # floats across every formatting regime, by bit pattern and by decade
        if rnd.random() < 0.5:
            f = struct.unpack(">d", rnd.randbytes(8))[0]
            return 0.5 if math.isnan(f) or math.isinf(f) else f
        return rnd.choice([-1, 1]) * rnd.random() * 10.0 ** rnd.randrange(-30, 30)
    if kind == 3:
        return rnd.choice([0.0, -0.0, 1.0, 100.0, 1e16, 1e21, 1e-6, 1e-7, 123456789012345678.0, 4.5, 0.002])
    if kind == 4:
        return "".join(rnd.choice(_CHARS) for _ in range(rnd.randrange(12)))
    if kind == 5:
        return datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=rnd.randrange(-12, 13)))) + timedelta(
            microseconds=rnd.randrange(10**12))
    if kind in (6, 7):
        return {"".join(rnd.choice(_CHARS) for _ in range(rnd.randrange(1, 4))): _random_value(rnd, depth + 1)
                for _ in range(rnd.randrange(6))}
    return [_random_value(rnd, depth + 1) for _ in range(rnd.randrange(5))]


def test_canonical_json_is_byte_for_byte_the_rfc8785_package() -> None:
    # Our serialiser is a faster re-implementation; the maintained package is the reference.
    import random

    rnd = random.Random(8785)
    for _ in range(3000):
        value = _random_value(rnd)
        assert canonical_json(value) == _reference(value), value


@pytest.mark.parametrize("bad", [{"k": 2**53}, {"k": -(2**53)}, {1: "int key"}, {"k": object()},
                                 {"k": "\ud800 lone surrogate"}, [math.nan]])
def test_what_the_rfc8785_package_refuses_has_no_canonical_form(bad) -> None:
    import rfc8785

    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(bad)
    with pytest.raises(CanonicalError):
        canonical_json(bad)
