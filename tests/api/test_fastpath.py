"""The lean path (qi/api/fastpath.py, decision 0120) and FastAPI's route answer /verify and /live
identically: the same status, headers and bytes (``checked_at`` aside), the same rate limit, denial
log and metrics; and the lean path really serves them (FastAPI is not called), while what it does
not handle reaches FastAPI. An app of the API world's stores in this process, driven over ASGI."""

from __future__ import annotations

import asyncio
import json
import os
import re

import httpx
import pytest
import structlog
from fastapi import FastAPI

from projections.registry import LOOKUPS
from qi.api.ratelimit import TokenBucket
from qi.api.sources.lookups import LookupReader
from qi.config import Settings
from qi.platform import Platform
from tests.api.world import FORGED, REVOKED, UNACCREDITED, VALID

pytestmark = pytest.mark.stack

_CHECKED_AT = re.compile(rb'"checked_at":"[^"]+"')


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.headers.raw == b.headers.raw
    assert _CHECKED_AT.sub(b"", a.content) == _CHECKED_AT.sub(b"", b.content)
    assert a.content.count(b'"checked_at"') == b.content.count(b'"checked_at"')


@pytest.fixture
def app(api_world, monkeypatch):
    for k in [k for k in os.environ if k.startswith("QI_")]:
        monkeypatch.delenv(k)
    for k, v in api_world.env.items():
        if k.startswith("QI_"):
            monkeypatch.setenv(k, v)
    return Platform(Settings.from_env()).api_app()


@pytest.fixture
def reached_fastapi(monkeypatch) -> list[str]:
    """The paths of the HTTP requests that reached FastAPI's own ``__call__`` (not the lean path)."""
    reached: list[str] = []
    fastapi_call = FastAPI.__call__

    async def spy(self, scope, receive, send):
        if scope["type"] == "http":
            reached.append(scope["path"])
        await fastapi_call(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", spy)
    return reached


def _only_fastapi(app):
    async def only_fastapi(scope, receive, send):  # the same app without its lean path
        await FastAPI.__call__(app, scope, receive, send)
    return only_fastapi


def test_lean_and_fastapi_paths_answer_alike(app, reached_fastapi) -> None:
    only_fastapi = _only_fastapi(app)

    def requests() -> float:
        return sum(s.value for m in app.state.metrics.requests.collect() for s in m.samples
                   if s.name == "qi_api_requests_total" and s.labels["endpoint"] == "verify")

    def denied() -> float:
        return app.state.metrics.registry.get_sample_value("qi_api_denied_total", {"status": "429"}) or 0.0

    async def go() -> None:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as lean, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=only_fastapi), base_url="http://api") as full:
            app.state.verify_bucket = TokenBucket(1e6, 1_000_000)
            paths = [f"/verify/{c}" for c in (VALID, REVOKED, FORGED, UNACCREDITED, "DCC-UNKNOWN")] + ["/live"]
            for p in paths:
                before = requests()
                a = await lean.get(p)
                assert reached_fastapi == [], f"{p} went through FastAPI"
                assert requests() == before + (p != "/live"), "the lean path counts its requests"
                b = await full.get(p)
                assert reached_fastapi == [p]
                reached_fastapi.clear()
                _same(a, b)
            valid = (await lean.get(f"/verify/{VALID}")).json()
            assert valid["status"] == "valid" and valid["proof"]["checkpoint"]["tree_size"] >= 1
            assert (await lean.get("/verify/DCC-UNKNOWN")).json()["code"] == "not_found"
            # a second answer reuses the cached JSON of the Redis part: still the same as a fresh build
            app.state.verify_cache._now.clear()
            _same(await lean.get(f"/verify/{VALID}"), await lean.get(f"/verify/{VALID}"))
            # what the lean path leaves to FastAPI: an id outside the pattern (422), more path (404)
            for p, status in ((f"/verify/{VALID}%20x", 422), (f"/verify/{VALID}/x", 404), ("/verify/", 404)):
                a = await lean.get(p)
                assert reached_fastapi and a.status_code == status, (p, a.status_code, a.text)
                reached_fastapi.clear()
                _same(a, await full.get(p))
            reached_fastapi.clear()

            # the rate limit: the same 429, Retry-After, log line and denial metric on either path
            for client in (lean, full):
                app.state.verify_bucket = TokenBucket(0.25, 1, clock=lambda: 100.0)
                denied0 = denied()
                with structlog.testing.capture_logs() as logs:
                    ok, over = await client.get(f"/verify/{VALID}"), await client.get(f"/verify/{VALID}")
                assert ok.status_code == 200 and over.status_code == 429
                assert over.headers["retry-after"] == "4" and over.json()["code"] == "too_many_requests"
                assert [e for e in logs if e["event"] == "api.denied"] == [
                    {"event": "api.denied", "log_level": "warning", "status": 429, "reason": "rate",
                     "path": f"/verify/{VALID}", "client": "127.0.0.1"}]
                assert denied() == denied0 + 1
                if client is lean:
                    first = over
                else:
                    _same(first, over)
            app.state.verify_bucket = TokenBucket(1e6, 1_000_000)

            # Redis down: 503 from both, the same body
            good = app.state.sources.lookups
            down = LookupReader("redis://127.0.0.1:1/0", LOOKUPS, namespace="x")
            await down.start()
            app.state.sources.lookups = down
            try:
                a, b = await lean.get(f"/verify/{VALID}"), await full.get(f"/verify/{VALID}")
                assert a.status_code == 503 and a.json()["code"] == "unavailable"
                _same(a, b)
            finally:
                app.state.sources.lookups = good
                await down.close()
            assert reached_fastapi == [f"/verify/{VALID}"] * 3  # only the `full` client's requests

    asyncio.run(go())
    # the route is still the documented contract
    paths = app.openapi()["paths"]
    assert "/verify/{certificate_id}" in paths and "/live" in paths
    assert paths["/verify/{certificate_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] \
        == {"$ref": "#/components/schemas/Verification"}
    metrics = json.dumps([s.labels for m in app.state.metrics.requests.collect() for s in m.samples])
    assert '"endpoint": "live"' in metrics and '"status": "503"' in metrics


def test_lean_and_fastapi_paths_answer_readings_alike(app, api_world, reached_fastapi, tmp_path) -> None:
    """A sensor's readings (decision 0129): the plain form is served by the lean path with the same
    bytes as FastAPI's route; every other form, a missing/bad token and a role that may not read
    reach FastAPI, which answers (and logs a denial once) as before."""
    from datetime import timedelta

    from qi.api.auth import Role
    from qi.api.shared import Shared
    from qi.api.sources.warehouse import WarehouseReader
    from tests.api.world import SENSOR, TWIN

    only_fastapi = _only_fastapi(app)

    def served(status: str) -> float:
        return app.state.metrics.registry.get_sample_value(
            "qi_api_requests_total", {"endpoint": "readings", "status": status}) or 0.0

    now = api_world.now
    z = "%Y-%m-%dT%H:%M:%SZ"
    path = f"/sensors/{TWIN}/{SENSOR}/readings"
    day = {"from": (now - timedelta(hours=24)).strftime(z), "to": now.strftime(z)}
    plain = [day, {**day, "max_points": "10"}, {**day, "max_points": "5000"}, {**day, "extra": "ignored"},
             {"from": (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.250000+05:30"),
              "to": (now + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S+05:30")},
             {"from": (now - timedelta(days=3)).strftime(z), "to": (now - timedelta(days=2)).strftime(z)}]
    reader = {"Authorization": f"Bearer {api_world.token(Role.reader)}"}
    admin = {"Authorization": f"Bearer {api_world.token(Role.admin)}"}
    publisher = {"Authorization": f"Bearer {api_world.token(Role.publisher)}"}
    # forms the lean path leaves to FastAPI: (params, headers, FastAPI's status)
    deferred = [(day, {}, 401), (day, {"Authorization": "Bearer not-a-token"}, 401), (day, {"Authorization": "Basic x"}, 401),
                (day, publisher, 403),
                ({**day, "from": day["from"][:-1]}, reader, 400),  # no time zone
                ({**day, "to": day["to"][:-1] + "+00:60"}, reader, 422),  # fromisoformat would take it
                ({"from": day["to"], "to": day["from"]}, reader, 400),  # from after to
                ({**day, "max_points": "9"}, reader, 422), ({**day, "max_points": "0100"}, reader, 200),
                ({"from": str(int((now - timedelta(hours=2)).timestamp())), "to": day["to"]}, reader, 200),
                ([("from", day["from"]), ("to", day["to"]), ("to", day["to"])], reader, 200),
                ({**day, "from": (now - timedelta(days=400)).strftime(z)}, reader, 400)]

    async def go() -> None:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as lean, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=only_fastapi), base_url="http://api") as full:
            for params in plain:
                for headers in (reader, admin):
                    ok0 = served("200")
                    app.state.shared = Shared()  # each path computes its own answer
                    a = await lean.get(path, params=params, headers=headers)
                    assert reached_fastapi == [], f"{params} went through FastAPI"
                    assert a.status_code == 200 and served("200") == ok0 + 1, a.text
                    app.state.shared = Shared()
                    b = await full.get(path, params=params, headers=headers)
                    assert reached_fastapi == [path]
                    reached_fastapi.clear()
                    _same(a, b)
            assert sum(p["n"] for p in (await lean.get(path, params={**day, "max_points": "5000"}, headers=reader)
                                        ).json()["points"]) > 0
            reached_fastapi.clear()
            for params, headers, status in deferred:
                app.state.shared = Shared()
                with structlog.testing.capture_logs() as logs:
                    a = await lean.get(path, params=params, headers=headers)
                assert reached_fastapi == [path] and a.status_code == status, (params, headers, a.status_code, a.text)
                assert len([e for e in logs if e["event"] == "api.denied"]) == (status in (401, 403))
                reached_fastapi.clear()
                app.state.shared = Shared()
                _same(a, await full.get(path, params=params, headers=headers))
                reached_fastapi.clear()
            # the warehouse's owner gone: the same 503 from both
            good = app.state.sources.warehouse
            down = WarehouseReader(f"chdb://{tmp_path / 'none'}", "qi", run_dir=tmp_path)
            await down.start()
            app.state.sources.warehouse, app.state.series = down, None
            try:
                unavailable0 = served("503")
                a, b = await lean.get(path, params=day, headers=reader), await full.get(path, params=day, headers=reader)
                assert a.status_code == 503 and a.json()["code"] == "unavailable", a.text
                assert served("503") == unavailable0 + 2
                _same(a, b)
            finally:
                app.state.sources.warehouse, app.state.series = good, None
                await down.close()
            assert reached_fastapi == [path]

    asyncio.run(go())
    assert "/sensors/{twin_id}/{sensor_id}/readings" in app.openapi()["paths"]
