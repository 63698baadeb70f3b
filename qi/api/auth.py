"""Bearer tokens and roles (docs/decisions/0110-api-tokens.md).

Tokens are JWTs signed with HS256 (PyJWT): ``sub`` (who), ``role`` (reader | publisher |
auditor | admin), ``iss``, ``iat``, ``exp``, ``jti``. Verifying one needs only the shared key,
so every API process and machine checks tokens without a round trip. ``admin`` may do what
every other role may. A denied request is logged with the reason, never with the token.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import jwt
import structlog
from fastapi import Request

from qi.api.errors import Forbidden, Unauthorized

log = structlog.get_logger(__name__)

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32


class Role(StrEnum):
    reader = "reader"          # registry, certificates, sensors, alerts
    publisher = "publisher"    # POST /events
    auditor = "auditor"        # proofs, checkpoints, the registry at a point in time
    admin = "admin"            # everything


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    token_id: str | None = None


class TokenKeyError(Exception):
    """No usable token key: the message says what to set."""


def load_or_create_key(path: Path, *, create: bool) -> bytes:
    """The HS256 key in ``path`` (made once, mode 0600, when ``create``)."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_urlsafe(48).encode() + b"\n")
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise TokenKeyError(f"no API token key in {path}: run `qi tokens issue` once, or set "
                            "QI_API_TOKEN_KEY / QI_API_TOKEN_KEY_FILE") from None
    if len(key) < MIN_KEY_BYTES:
        raise TokenKeyError(f"the API token key in {path} is shorter than {MIN_KEY_BYTES} bytes")
    return key


class Tokens:
    """Issues and verifies the API's bearer tokens with one HS256 key.

    A token that verified is remembered (at most ``max_remembered``) with the times it is valid
    between (``iat``/``nbf`` to ``exp``), so a client's next request costs a dict lookup instead
    of PyJWT's decode (~0.1-0.35 ms of CPU, a third of a lean request; decision 0129). Only
    successes are remembered, and only inside their validity: outside it, and for any token not
    remembered, the full check runs and gives its reason. The key cannot change under a
    ``Tokens`` (rotating it means new processes), and tokens are not revocable one by one
    (decision 0110), so a remembered verdict is the one PyJWT would give again."""

    def __init__(self, key: bytes, *, issuer: str, max_remembered: int = 4096) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise TokenKeyError(f"the API token key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.issuer = issuer
        self._max = max_remembered
        self._verified: dict[str, tuple[Principal, float, float]] = {}

    def issue(self, role: Role, subject: str, ttl_s: int, *, now: float | None = None) -> str:
        t = int(now if now is not None else time.time())
        claims = {"sub": subject, "role": role.value, "iss": self.issuer, "iat": t, "exp": t + ttl_s,
                  "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`Unauthorized` with the reason otherwise."""
        hit = self._verified.get(token)
        if hit is not None and hit[1] <= time.time() < hit[2]:
            return hit[0]
        principal, valid_from, expires = self._check(token)
        if len(self._verified) >= self._max:
            self._verified.clear()
        self._verified[token] = (principal, valid_from, expires)
        return principal

    def _check(self, token: str) -> tuple[Principal, float, float]:
        """PyJWT's full check: the principal and the times it is valid between."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=self.issuer,
                                options={"require": ["sub", "exp", "iat", "iss"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"invalid token ({type(e).__name__})") from None
        try:
            role = Role(claims.get("role"))
        except ValueError:
            raise Unauthorized("token names no known role") from None
        valid_from = max(int(claims["iat"]), int(claims.get("nbf", claims["iat"])))
        return Principal(str(claims["sub"]), role, claims.get("jti")), valid_from, int(claims["exp"])


def bearer(request: Request) -> str | None:
    return bearer_token(request.headers.get("authorization"))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization`` header's value: None when there is none, ``""`` when it
    is not ``Bearer <token>``."""
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return ""
    return value.strip()


def allowed(*roles: Role) -> frozenset[Role]:
    """The roles that may do what ``roles`` may: those and admin."""
    return frozenset(roles) | {Role.admin}


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def require(*roles: Role):
    """A dependency: the caller's principal if its token is valid and its role is one of ``roles``
    (or admin); 401/403 otherwise, logged without the token."""
    may = allowed(*roles)
    names = ", ".join(sorted(r.value for r in may))

    async def dependency(request: Request) -> Principal:
        tokens: Tokens = request.app.state.tokens
        token = bearer(request)
        try:
            if token is None:
                raise Unauthorized("missing bearer token (Authorization: Bearer <token>)",
                                   headers={"WWW-Authenticate": "Bearer"})
            if token == "":
                raise Unauthorized("malformed Authorization header; expected 'Bearer <token>'",
                                   headers={"WWW-Authenticate": "Bearer"})
            try:
                principal = tokens.verify(token)
            except Unauthorized as e:
                e.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                raise
        except Unauthorized as e:
            log.warning("api.denied", status=401, reason=e.detail, method=request.method,
                        path=request.url.path, client=_client(request))
            raise
        if principal.role not in may:
            log.warning("api.denied", status=403, reason="role", role=principal.role.value,
                        subject=principal.subject, method=request.method, path=request.url.path,
                        client=_client(request))
            raise Forbidden(f"role {principal.role.value!r} may not do this; needs one of: {names}")
        return principal

    return dependency
