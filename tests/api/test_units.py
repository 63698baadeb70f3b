"""Pure pieces of the API: the token bucket, tokens, TTLs, attribute filters (no stack)."""

from __future__ import annotations

import click
import pytest

from qi.api.auth import Role, TokenKeyError, Tokens, load_or_create_key
from qi.api.errors import BadRequest, Unauthorized
from qi.api.ratelimit import TokenBucket, retry_after
from qi.api.routers.twins import parse_attr_filters
from qi.cli.api import parse_ttl


def test_token_bucket_refills_at_its_rate_per_client() -> None:
    now = [100.0]
    b = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("a")
    assert wait == pytest.approx(0.5) and retry_after(wait) == "1"
    assert b.take("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert b.take("a") == 0.0 and b.take("a") > 0
    now[0] += 100
    assert [b.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # never more than the burst


def test_token_bucket_forgets_old_clients_beyond_its_size() -> None:
    b = TokenBucket(rate=1.0, burst=1, max_clients=2, clock=lambda: 0.0)
    for c in ("a", "b", "c"):
        b.take(c)
    assert b.take("a") == 0.0  # "a" was evicted: a fresh bucket
    assert b.take("c") > 0


def test_tokens_round_trip_and_reject_tampering(tmp_path) -> None:
    t = Tokens(b"k" * 32, issuer="qi-stream")
    token = t.issue(Role.auditor, "alice", 600)
    p = t.verify(token)
    assert (p.subject, p.role) == ("alice", Role.auditor) and p.token_id
    head, body, sig = token.split(".")
    with pytest.raises(Unauthorized):
        t.verify(f"{head}.{body}.{sig[:-2]}xx")
    with pytest.raises(Unauthorized, match="expired"):
        t.verify(t.issue(Role.admin, "x", 60, now=0))
    with pytest.raises(TokenKeyError):
        Tokens(b"short", issuer="x")
    key = load_or_create_key(tmp_path / "k" / "api.key", create=True)
    assert len(key) >= 32 and (tmp_path / "k" / "api.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(tmp_path / "k" / "api.key", create=True) == key
    with pytest.raises(TokenKeyError, match="qi tokens issue"):
        load_or_create_key(tmp_path / "none", create=False)


def test_ttl_and_attribute_filters() -> None:
    assert [parse_ttl(x) for x in ("90", "2m", "12h", "30d")] == [90, 120, 43200, 2592000]
    with pytest.raises(click.BadParameter):
        parse_ttl("1w")
    assert parse_attr_filters(["site=plant1", "a=b=c", "empty="]) == {"site": "plant1", "a": "b=c", "empty": ""}
    with pytest.raises(BadRequest):
        parse_attr_filters(["=x"])


def test_a_verified_token_is_remembered_only_inside_its_validity(monkeypatch) -> None:
    """Tokens.verify (decision 0129): a token that verified is not decoded again while it is valid;
    outside its validity (the clock past its exp, or before its iat) the full check runs again; a
    bad token is
    never remembered; the memory is bounded."""
    import time as _time

    import jwt

    from qi.api import auth

    decodes = []
    real = jwt.decode
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: decodes.append(1) or real(*a, **k))
    tokens = Tokens(b"k" * 40, issuer="qi-stream")
    now = _time.time()
    token = tokens.issue(Role.reader, "u", 600, now=now - 300)
    assert tokens.verify(token).role is Role.reader and tokens.verify(token).subject == "u"
    assert len(decodes) == 1
    for bad in ("x.y.z", token[:-2] + "AA"):
        for _ in range(2):
            with pytest.raises(Unauthorized):
                tokens.verify(bad)
    assert len(decodes) == 5
    # the memory's clock past the token's exp, then before its iat: PyJWT decodes it again each time
    # (PyJWT reads the real clock, by which the token is valid, so it accepts it)
    monkeypatch.setattr(auth.time, "time", lambda: now + 301)
    assert tokens.verify(token).subject == "u" and len(decodes) == 6
    monkeypatch.setattr(auth.time, "time", lambda: now - 301)
    assert tokens.verify(token).subject == "u" and len(decodes) == 7
    monkeypatch.setattr(auth.time, "time", lambda: now)
    assert tokens.verify(token).subject == "u" and len(decodes) == 7  # remembered again
    small = Tokens(b"k" * 40, issuer="qi-stream", max_remembered=2)
    for i in range(5):
        small.verify(small.issue(Role.reader, f"u{i}", 60))
    assert len(small._verified) <= 2
