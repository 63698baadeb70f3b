"""Every endpoint with every role: allowed or denied, and denials logged without the token."""

from __future__ import annotations

import time

import httpx
import pytest

from qi.api.auth import Role, Tokens
from tests.api.world import REVOKED, SENSOR, TWIN, VALID

pytestmark = pytest.mark.stack

READER = {Role.reader, Role.admin}
AUDITOR = {Role.auditor, Role.admin}
PUBLISHER = {Role.publisher, Role.admin}
PUBLIC = None

#: (method, path, params, body, roles allowed; None: anyone, without a token)
ENDPOINTS = [
    ("GET", "/twins", None, None, READER),
    ("GET", f"/twins/{TWIN}", None, None, READER),
    ("GET", f"/twins/{TWIN}/history", None, None, READER),
    ("GET", "/certificates", None, None, READER),
    ("GET", f"/certificates/{VALID}", None, None, READER),
    ("GET", f"/sensors/{TWIN}/{SENSOR}/latest", None, None, READER),
    ("GET", f"/sensors/{TWIN}/{SENSOR}/readings", None, None, READER),
    ("GET", "/alerts", None, None, READER),
    ("GET", "/registry/as-of", {"at": "2026-11-01T00:00:00Z"}, None, AUDITOR),
    ("GET", "/audit/checkpoint", None, None, AUDITOR),
    ("GET", "/audit/proof/{event}", None, None, AUDITOR),
    ("POST", "/events", None, [{"event_type": "nope"}], PUBLISHER),
    ("GET", f"/verify/{VALID}", None, None, PUBLIC),
    ("GET", "/audit/public-key", None, None, PUBLIC),
    ("GET", "/health", None, None, PUBLIC),
]


def _call(c: httpx.Client, method: str, path: str, params, body, world) -> httpx.Response:
    path = path.replace("{event}", world.issued_event_id(REVOKED))
    return c.request(method, path, params=params, json=body)


@pytest.mark.parametrize("method,path,params,body,allowed", ENDPOINTS, ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_each_role_allowed_or_denied(api_world, method, path, params, body, allowed) -> None:
    for role in Role:
        with api_world.client(role) as c:
            r = _call(c, method, path, params, body, api_world)
        if allowed is None or role in allowed:
            assert r.status_code == 200, (role, r.status_code, r.text[:300])
        else:
            assert r.status_code == 403, (role, r.status_code, r.text[:300])
            assert r.json()["code"] == "forbidden" and role.value in r.json()["detail"]
    with api_world.client() as c:
        anonymous = _call(c, method, path, params, body, api_world)
    if allowed is None:
        assert anonymous.status_code == 200
    else:
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")


def test_bad_tokens_are_401(api_world) -> None:
    wrong_key = Tokens(b"another-key-another-key-another-key-0123", issuer="qi-stream").issue(Role.admin, "x", 3600)
    expired = api_world.tokens.issue(Role.admin, "x", 60, now=time.time() - 3600)
    other_issuer = Tokens(b"test-api-token-secret-0123456789-abcdefghijklmnop", issuer="elsewhere").issue(
        Role.admin, "x", 3600)
    cases = {"wrong key": f"Bearer {wrong_key}", "expired": f"Bearer {expired}",
             "other issuer": f"Bearer {other_issuer}", "not a jwt": "Bearer abc.def.ghi", "basic": "Basic dXNlcjpwdw==",
             "empty": "Bearer"}
    with httpx.Client(base_url=api_world.url) as c:
        for name, header in cases.items():
            r = c.get("/twins", headers={"Authorization": header})
            assert r.status_code == 401, (name, r.text)
            assert r.json()["code"] == "unauthorized"
        assert "expired" in c.get("/twins", headers={"Authorization": cases["expired"]}).json()["detail"]


def test_denied_requests_are_logged_without_the_token(api_world) -> None:
    token = api_world.token(Role.publisher, subject="log-check-subject")
    with httpx.Client(base_url=api_world.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/twins").status_code == 403
    log = api_world.procs["api"].log
    deadline = time.monotonic() + 10
    while "log-check-subject" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    line = next(x for x in text.splitlines() if "log-check-subject" in x)
    assert '"api.denied"' in line and '"status": 403' in line and '"/twins"' in line
    assert token not in text and token.split(".")[2] not in text


def test_qi_tokens_issue_makes_a_working_token(api_world) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-m", "qi", "tokens", "issue", "--role", "auditor", "--subject", "alice",
                          "--ttl", "2h"], env=api_world.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    p = api_world.tokens.verify(token)
    assert (p.subject, p.role) == ("alice", Role.auditor)
    with httpx.Client(base_url=api_world.url, headers={"Authorization": f"Bearer {token}"}) as c:
        assert c.get("/audit/checkpoint").status_code == 200
        assert c.get("/twins").status_code == 403
    bad = subprocess.run([sys.executable, "-m", "qi", "tokens", "issue", "--role", "root", "--subject", "x"],
                         env=api_world.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "root" in bad.stderr
