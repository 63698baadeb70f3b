"""The dashboard in real headless Chromium, on a world flowing through real workers.

A world of its own (tests/api/world.py: the demo's labs, twins and certificates, a day of one
sensor's readings; validate, project postgres/redis, warehouse, audit and `qi api` as processes)
plus the real anomaly scorer (`qi worker score`). In the browser:

1. the plant overview shows a reading published during the test within 2 seconds (three times);
2. an anomaly injected as readings (a spike after a warm-up) reaches the overview as an alert,
   through the scorer, Kafka and the live feed;
3. the twin page charts a day of readings with the anomaly marked;
4. the certificate page shows status, checks and the verification;
5. the public verification page, without a token, says valid / revoked / invalid / not found, and
   the inclusion proof is checked in the browser (and fails there when the proof is tampered with).

Screenshots of each page are written to docs/img/dashboard-*.png (shown in the README).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from events.models import SensorReading
from qi.api.auth import Role
from qi.platform import Platform
from tests.api.browser import chromium, console_errors, needs_chromium, screenshot, wait_for
from tests.api.world import (
    FORGED,
    REVOKED,
    UNACCREDITED,
    VALID,
    Proc,
    World,
    start_world,
    stop_world,
)
from tests.conftest import ROOT, make_settings

pytestmark = [pytest.mark.stack, needs_chromium]

IMG = ROOT / "docs" / "img"
LIVE_TWIN = "thermo-0002"
_n = itertools.count()


@pytest.fixture(scope="module")
def web_world(local_stack, stack_env, tmp_path_factory) -> Iterator[World]:
    prefix = f"web{os.getpid()}-{next(_n)}."
    run_dir = tmp_path_factory.mktemp("web-world")
    # its own audit log tables: another world in this session (tests/api/conftest.py) signs heads
    # with its own key into the default schema
    schema = "audit_" + prefix.strip(".").replace("-", "_")
    world = start_world(Platform(make_settings(local_stack, prefix)), stack_env, run_dir,
                        QI_AUDIT_PG_SCHEMA=schema)
    world.procs["score"] = Proc(["worker", "score"], world.env, run_dir / "score.log").start()
    yield world
    alive = stop_world(world)
    assert all(alive.values()), f"a worker died during the browser tests: {alive}"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    yield from chromium()


def _publish(platform: Platform, events: list) -> float:
    """Publish and return the monotonic time at which Kafka acknowledged every event."""
    async def go() -> float:
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)
            return time.monotonic()
    return asyncio.run(go())


def _sign_in(driver, world: World, role: Role = Role.reader) -> None:
    driver.get(world.url + "/ui/verify")
    driver.execute_script("sessionStorage.setItem('qi.token', arguments[0])", world.token(role, "browser"))


def _open(driver, url: str) -> None:
    driver.set_window_size(1440, 1000)
    driver.get(url)


def _shot(driver, name: str) -> None:
    screenshot(driver, IMG / f"dashboard-{name}.png")
    assert (IMG / f"dashboard-{name}.png").stat().st_size > 10_000


def _overview_live(driver, world: World) -> None:
    _open(driver, world.url + "/ui")
    wait_for(lambda: driver.execute_script("return document.getElementById('feed-state')?.dataset.state") == "live",
             timeout_s=60, what="the overview's live feed")


def _card_value(driver, twin: str, sensor: str) -> str | None:
    return driver.execute_script(
        "const c = document.getElementById(arguments[0]); return c ? c.dataset.value : null;", f"sensor-{twin}-{sensor}")


def test_the_overview_shows_a_reading_published_now_within_two_seconds(web_world, browser):
    _sign_in(browser, web_world)
    _overview_live(browser, web_world)
    assert browser.execute_script("return document.querySelectorAll('#twins tr[data-twin]').length") == 4
    latencies = []
    for i in range(3):
        value = round(40.0 + i + random.random(), 4)
        reading = SensorReading(occurred_at=datetime.now(UTC), source="browser-test", twin_id=LIVE_TWIN,
                                sensor_id="live", quantity="temperature", value=value, unit="Cel")
        acked = _publish(web_world.platform, [reading])
        wait_for(lambda v=value: _card_value(browser, LIVE_TWIN, "live") == str(v), timeout_s=10, every_s=0.02,
                 what=f"reading {value} on the overview")
        latencies.append(time.monotonic() - acked)
    print(f"publish-to-screen latencies: {', '.join(f'{x * 1000:.0f} ms' for x in latencies)}")
    assert max(latencies) < 2.0, f"publish-to-screen latencies {latencies}"
    assert browser.execute_script("return document.getElementById('stat-live').textContent") == "3"
    assert console_errors(browser) == []


def test_an_injected_anomaly_appears_as_an_alert(web_world, browser):
    _sign_in(browser, web_world)
    _overview_live(browser, web_world)
    rnd = random.Random(7)
    now = datetime.now(UTC).replace(microsecond=0)
    start, noise, spike = now - timedelta(minutes=200), 0.05, range(182, 185)
    readings = [SensorReading(occurred_at=start + timedelta(minutes=i), source="browser-test", twin_id=LIVE_TWIN,
                              sensor_id="s7", quantity="temperature", unit="Cel",
                              value=round(21.0 + rnd.gauss(0, noise) + (30 * noise if i in spike else 0.0), 4))
                for i in range(200)]
    _publish(web_world.platform, readings)
    selector = f'#alerts li[data-twin="{LIVE_TWIN}"][data-sensor="s7"][data-state="RAISED"]'
    wait_for(lambda: browser.execute_script(f"return document.querySelector('{selector}') !== null"),
             timeout_s=120, what="the scorer's alert for the spike on the overview")
    raised_at = browser.execute_script(f"return Number(document.querySelector('{selector}').dataset.t)")
    assert raised_at == int((start + timedelta(minutes=spike[0])).timestamp() * 1000), "the alert is the spike's"
    # the card shows the sensor's last reading and its score from the scorer
    wait_for(lambda: _card_value(browser, LIVE_TWIN, "s7") == str(readings[-1].value), timeout_s=30,
             what="the last reading of the injected series")
    wait_for(lambda: browser.execute_script(
        f"return document.getElementById('sensor-{LIVE_TWIN}-s7').dataset.score !== undefined"), timeout_s=30,
        what="a score on the card")
    assert int(browser.find_element("id", "stat-open").text) >= 1
    assert console_errors(browser) == []
    _shot(browser, "overview")


def test_the_twin_page_charts_a_day_of_readings_with_the_anomaly_marked(web_world, browser):
    _sign_in(browser, web_world)
    _open(browser, web_world.url + "/ui/twins/gauge-0001")
    wait_for(lambda: browser.execute_script("return document.getElementById('charts')?.dataset.ready") == "true",
             timeout_s=30, what="the twin's charts")
    chart = browser.find_element("id", "chart-s1")
    assert int(chart.get_attribute("data-points")) >= 700 and int(chart.get_attribute("data-anomalies")) >= 1
    assert browser.execute_script("return document.querySelectorAll('#chart-s1 .uplot canvas').length") == 1
    certs = browser.execute_script(
        "return [...document.querySelectorAll('#certificates tr[data-certificate]')].map(r => [r.dataset.certificate, r.querySelector('.badge').textContent])")
    assert dict(certs) == {VALID: "valid", FORGED: "invalid", UNACCREDITED: "invalid"}
    assert "Acme Process Plant" in browser.find_element("id", "page").text
    assert console_errors(browser) == []
    _shot(browser, "twin")


def _verdict(driver) -> tuple[str, str]:
    wait_for(lambda: driver.execute_script("return document.getElementById('result')?.dataset.state") == "done",
             timeout_s=30, what="a verification result")
    return tuple(driver.execute_script("""
        const v = document.getElementById('verdict'), p = document.getElementById('proof-check');
        return [v ? v.dataset.status : null, p ? p.dataset.ok : null];"""))


def test_the_certificate_page_shows_status_checks_and_verification(web_world, browser):
    _sign_in(browser, web_world)
    _open(browser, web_world.url + f"/ui/certificates/{FORGED}")
    assert _verdict(browser) == ("invalid", "true")
    outcomes = dict(browser.execute_script(
        "return [...document.querySelectorAll('.checks li')].map(li => [li.dataset.check, li.dataset.outcome])"))
    assert outcomes["signature"] == "FAIL" and outcomes["issuer_key"] == "PASS"
    text = browser.find_element("id", "page").text
    assert "CertificateIssued" in text and "Inclusion proof checked in your browser" in text
    assert console_errors(browser) == []
    _shot(browser, "certificate")


TAMPER = """
const real = window.fetch;
window.fetch = async (url, opts) => {
  const resp = await real(url, opts);
  if (!String(url).startsWith('/verify/')) return resp;
  const doc = await resp.json();
  const h = Uint8Array.from(atob(doc.proof.hashes[0]), (c) => c.charCodeAt(0));
  h[0] ^= 1;
  doc.proof.hashes[0] = btoa(String.fromCharCode(...h));
  return new Response(JSON.stringify(doc), { status: 200, headers: { 'Content-Type': 'application/json' } });
};
"""


def test_public_verification_checks_the_proof_in_the_browser(web_world, browser):
    browser.delete_all_cookies()
    _open(browser, web_world.url + "/ui/verify")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    expected = {VALID: "valid", REVOKED: "revoked", FORGED: "invalid", UNACCREDITED: "invalid",
                "DCC-NO-SUCH-CERTIFICATE": "not_found"}
    shots = {VALID: "verify-valid", REVOKED: "verify-revoked", UNACCREDITED: "verify-invalid"}
    for cert, status in expected.items():
        _open(browser, web_world.url + "/ui/verify")
        box = browser.find_element("id", "certificate-id")
        box.clear()
        box.send_keys(cert)
        browser.find_element("id", "verify-button").click()
        got = _verdict(browser)
        assert got == (status, None if status == "not_found" else "true"), (cert, got)
        assert browser.current_url.endswith(f"/ui/verify?id={cert}")
        if cert in shots:
            _shot(browser, shots[cert])
    assert "not signed in" in browser.find_element("id", "session-state").text   # no token was used
    assert console_errors(browser) == [] or all("404" in e for e in console_errors(browser))

    # the browser really checks: one flipped bit in the audit path and the same page says no
    _open(browser, web_world.url + "/ui/verify")
    browser.execute_script(TAMPER)
    box = browser.find_element("id", "certificate-id")
    box.send_keys(VALID)
    browser.find_element("id", "verify-button").click()
    assert _verdict(browser) == ("unverified", "false")   # "valid" only with a proof this browser accepts
    assert "differs from the checkpoint" in browser.find_element("id", "proof-check").text


def test_the_api_stops_cleanly_with_live_streams_open(web_world, browser):
    """Last in this module: SIGTERM to `qi api` while a browser holds a live stream."""
    _sign_in(browser, web_world)
    _overview_live(browser, web_world)
    api = web_world.procs.pop("api")
    started = time.monotonic()
    api.proc.send_signal(signal.SIGTERM)
    rc = api.proc.wait(30)
    took = time.monotonic() - started
    assert rc == 0 and took < 15, (rc, took)   # streams are bounded: uvicorn's 10 s grace at most
    assert "live_feed_closed" in api.log.read_text()
    wait_for(lambda: browser.execute_script("return document.getElementById('feed-state').dataset.state") == "connecting",
             timeout_s=10, what="the page noticing the stream ended")
