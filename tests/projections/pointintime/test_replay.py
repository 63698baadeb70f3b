"""Point-in-time replay of the registry, in both times, on the real stack.

A twin changes at t1 and t2; a late change occurs at t1.5 but is recorded at t2.5; a certificate
is revoked at t3. `--as-of` follows what was recorded by T (log order), `--valid-at` what had
occurred by T (occurrence order), before, between and after each of them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from events.models import CertificateRevoked, TwinAttributesChanged, TwinRegistered
from projections.pointintime.registry import drop, show
from projections.pointintime.replay import FAMILIES, replay_registry
from tests.conftest import ROOT
from tests.fixtures import example_event

pytestmark = pytest.mark.stack

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
T1, T2, T3 = T0 + 10 * H, T0 + 20 * H, T0 + 30 * H
LATE_OCCURRED, LATE_RECORDED = T0 + 15 * H, T0 + 25 * H


def _events(catalog):
    twin = TwinRegistered(occurred_at=T0, recorded_at=T0, source="t", aggregate_version=1, twin_id="gauge-7",
                          kind="gauge", name="Gauge 7", attributes={"site": "south"})

    def change(v, occurred, recorded, changed):
        return TwinAttributesChanged(occurred_at=occurred, recorded_at=recorded, source="t", aggregate_version=v,
                                     twin_id="gauge-7", changed=changed, removed=[])

    cert = example_event(catalog, "CertificateIssued", 0)
    cert = cert.model_copy(update={"certificate_id": "cert-7", "occurred_at": T0, "recorded_at": T0,
                                   "aggregate_version": 1})
    revoke = CertificateRevoked(occurred_at=T3, recorded_at=T3, source="t", aggregate_version=2,
                                certificate_id="cert-7", revoked_by="lab", reason="drift")
    # log order = recorded order
    return [twin, cert, change(2, T1, T1, {"range": "A"}), change(3, T2, T2, {"range": "B"}),
            change(4, LATE_OCCURRED, LATE_RECORDED, {"range": "L", "site": "north"}), revoke]


# (time, mode) -> expected (range, site, certificate status); None: twin not registered yet
EXPECTED = {
    (T0 - H, "as_of"): None, (T0 - H, "valid_at"): None,
    (T0 + H, "as_of"): (None, "south", "VALID"), (T0 + H, "valid_at"): (None, "south", "VALID"),
    (T1 + H, "as_of"): ("A", "south", "VALID"), (T1 + H, "valid_at"): ("A", "south", "VALID"),
    (T0 + 17 * H, "as_of"): ("A", "south", "VALID"),      # the late change is not recorded yet
    (T0 + 17 * H, "valid_at"): ("L", "north", "VALID"),   # ... but it had happened
    (T2 + H, "as_of"): ("B", "south", "VALID"), (T2 + H, "valid_at"): ("B", "north", "VALID"),
    (T0 + 27 * H, "as_of"): ("L", "north", "VALID"),      # recorded last: what we knew
    (T0 + 27 * H, "valid_at"): ("B", "north", "VALID"),   # occurred before T2's change: what was true
    (T3 - H, "as_of"): ("L", "north", "VALID"), (T3 - H, "valid_at"): ("B", "north", "VALID"),
    (T3 + H, "as_of"): ("L", "north", "REVOKED"), (T3 + H, "valid_at"): ("B", "north", "REVOKED"),
}


def test_as_of_and_valid_at_before_between_and_after(platform, catalog):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            for e in _events(catalog):  # one by one: the log order is the recorded order
                await pub.publish(e)
        dsn = platform.endpoints().postgres
        for (at, mode), want in EXPECTED.items():
            res = await replay_registry(bootstrap=platform.endpoints().kafka, dsn=dsn, serde=serde,
                                        topics=[platform.topics.topic(f) for f in FAMILIES], mode=mode, at=at)
            try:
                twin = await show(dsn, res.schema, "gauge-7")
                cert = await show(dsn, res.schema, "cert-7")
                if want is None:
                    assert twin is None and cert is None, (at, mode)
                    continue
                got = (twin["attributes"].get("range"), twin["attributes"].get("site"), cert["status"])
                assert got == want, (at - T0, mode)
            finally:
                await drop(dsn, res.schema)

    asyncio.run(go())


def test_cli_prints_a_summary_and_the_object_and_drops(platform, catalog, stack_env):
    async def publish():
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            for e in _events(catalog):
                await pub.publish(e)

    asyncio.run(publish())
    env = dict(stack_env) | {"QI_KAFKA_TOPIC_PREFIX": platform.settings.kafka.topic_prefix}
    out = subprocess.run([sys.executable, "-m", "qi", "replay", "registry", "--valid-at", (T3 + H).isoformat(),
                          "--show", "cert-7", "--show", "gauge-7", "--drop"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert "6 of 6 events applied; 1 twins, 1 certificates (dropped)" in lines[0]
    assert json.loads(lines[1])["status"] == "REVOKED"
    assert json.loads(lines[2])["attributes"] == {"range": "B", "site": "north"}
    assert "ev/s" in out.stderr or "ev]" in out.stderr  # the progress bar with its rate
    listed = subprocess.run([sys.executable, "-m", "qi", "replay", "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert lines[0].split()[1].rstrip(":") not in listed.stdout  # dropped on request
