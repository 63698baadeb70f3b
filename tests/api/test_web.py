"""The dashboard's routes without a browser: roles on the live stream and the sensor list, the
SSE framing, pages and assets served only by name with a strict CSP, the vendored chart library."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest

from qi.api.auth import Role
from tests.conftest import ROOT


@pytest.mark.stack
def test_the_live_stream_and_sensor_list_need_the_reader_role(api_world):
    url = api_world.url
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/ui/live").status_code == 401
        assert c.get("/ui/api/sensors").status_code == 401
        publisher = {"Authorization": f"Bearer {api_world.token(Role.publisher)}"}
        assert c.get("/ui/live", headers=publisher).status_code == 403
        assert c.get("/ui/api/sensors", headers=publisher).status_code == 403
        reader = {"Authorization": f"Bearer {api_world.token(Role.reader)}"}
        sensors = c.get("/ui/api/sensors", params={"twin": "gauge-0001"}, headers=reader).json()["items"]
        # the world's day of readings (other tests, the fuzzer too, may POST a few more to this shared world)
        s1 = next(s for s in sensors if (s["twin_id"], s["sensor_id"]) == ("gauge-0001", "s1"))
        assert s1["readings"] >= 24 * 60 and s1["unit"] == "kPa" and s1["score"] is not None
        assert {s["twin_id"] for s in sensors} == {"gauge-0001"}
        assert c.get("/ui/api/sensors", params={"twin": "x' OR 1=1 --"}, headers=reader).status_code == 422
        with c.stream("GET", "/ui/live", headers=reader) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            first = ""
            for chunk in s.iter_text():
                first += chunk
                if "event: status" in first:
                    break
            assert re.search(r'event: status\ndata: \{"state": "(live|connecting)"\}', first), first
        # pages and assets are public, served only by name, with a strict CSP
        page = c.get("/ui/verify")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert c.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")
        for bad in ("/ui/static/../assets.py", "/ui/static/%2e%2e/assets.py", "/ui/static/nope.js"):
            assert c.get(bad).status_code == 404, bad


def test_the_vendored_chart_library_is_the_npm_release():
    vendored = ROOT / "qi" / "api" / "web" / "static" / "vendor" / "uplot"
    manifest = (vendored / "VENDORED.md").read_text()
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        digest = hashlib.sha256((vendored / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in manifest, name
    assert "MIT" in (vendored / "LICENSE").read_text()
    pages = (ROOT / "qi" / "api" / "web" / "pages")
    for html in pages.glob("*.html"):
        assert not re.search(r"""(src|href)=["']https?://""", html.read_text()), f"{html.name} loads from the network"

