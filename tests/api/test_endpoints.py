"""Every endpoint against the API world (real workers, real stores): what each answers."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta

import pytest

from events.signing import HybridPublicKey
from qi.api.auth import Role
from streams.audit.verifier import verify_checkpoint, verify_inclusion
from tests.api.world import FORGED, READINGS, REVOKED, SENSOR, TWIN, UNACCREDITED, VALID

pytestmark = pytest.mark.stack


def test_health_ready_live_metrics(api_world) -> None:
    with api_world.client() as c:
        assert c.get("/live").json() == {"live": True}
        ready = c.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["stores"] == {"registry": True, "lookups": True, "warehouse": True, "audit": True}
        assert c.get("/health").json()["ready"] is True
        metrics = c.get("/metrics").text
        assert 'qi_api_requests_total{endpoint="ready",status="200"}' in metrics


def test_twins_search_and_pages(api_world) -> None:
    with api_world.client(Role.reader) as c:
        all_twins = c.get("/twins", params={"limit": 500}).json()
        ids = [t["twin_id"] for t in all_twins["items"]]
        assert ids == sorted(ids) and {"gauge-0001", "thermo-0002", "mass-0003"} <= set(ids)
        assert all_twins["next_cursor"] is None
        page1 = c.get("/twins", params={"limit": 2}).json()
        assert [t["twin_id"] for t in page1["items"]] == ids[:2] and page1["next_cursor"] == ids[1]
        page2 = c.get("/twins", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
        assert [t["twin_id"] for t in page2["items"]] == ids[2:4]
        # attributes: gauge-0001 moved to building B3 (TwinAttributesChanged), the others stayed in B2
        b3 = c.get("/twins", params=[("attr", "building=B3"), ("attr", "site=plant1")]).json()["items"]
        assert [t["twin_id"] for t in b3] == ["gauge-0001"] and b3[0]["attributes"]["line"] == "L7"
        assert c.get("/twins", params={"status": "decommissioned"}).json()["items"] == []
        active = c.get("/twins", params={"status": "active", "owner": "Acme Process Plant"}).json()["items"]
        assert {t["twin_id"] for t in active} == set(ids)


def test_one_twin_with_relations_certificates_and_history(api_world) -> None:
    with api_world.client(Role.reader) as c:
        d = c.get("/twins/thermo-0002").json()
        assert d["twin"]["kind"] and d["twin"]["status"] == "active"
        assert d["relations"] == [{"twin_id": "thermo-0002", "relation": "calibrated_with",
                                   "target_twin_id": "mass-0003", "updated_at": d["relations"][0]["updated_at"]}]
        assert [r["twin_id"] for r in c.get("/twins/mass-0003").json()["relations"]] == ["thermo-0002"]
        gauge = c.get("/twins/gauge-0001").json()
        assert {x["certificate_id"]: x["status"] for x in gauge["certificates"]} == {
            VALID: "valid", FORGED: "invalid", UNACCREDITED: "invalid"}
        h = c.get("/twins/gauge-0001/history").json()
        assert [e["event_type"] for e in h["events"]] == ["TwinRegistered", "TwinAttributesChanged"]
        assert h["events"][1]["payload"]["changed"] == {"building": "B3", "line": "L7"} and not h["truncated"]
        assert c.get("/twins/no-such-twin").status_code == 404
        assert c.get("/twins/no-such-twin/history").status_code == 404


def test_certificates_filters_and_detail(api_world) -> None:
    with api_world.client(Role.reader) as c:
        by_status = {s: [x["certificate_id"] for x in c.get("/certificates", params={"status": s}).json()["items"]]
                     for s in ("valid", "revoked", "invalid")}
        assert by_status["revoked"] == [REVOKED] and VALID in by_status["valid"]
        assert set(by_status["invalid"]) == {FORGED, UNACCREDITED}
        mine = c.get("/certificates", params={"twin_id": "thermo-0002"}).json()["items"]
        assert [x["certificate_id"] for x in mine] == [REVOKED]
        # valid until a year after issue (October 2026): none ends within 30 days, all within 3 years
        assert c.get("/certificates", params={"expiring_within_days": 30}).json()["items"] == []
        soon = {x["certificate_id"] for x in c.get("/certificates", params={"expiring_within_days": 1100}).json()["items"]}
        assert VALID in soon and REVOKED not in soon
        page = c.get("/certificates", params={"limit": 2}).json()
        assert len(page["items"]) == 2 and page["next_cursor"] == page["items"][1]["certificate_id"]

        forged = c.get(f"/certificates/{FORGED}").json()
        assert forged["status"] == "invalid" and forged["validation"]["verdict"] == "INVALID"
        outcomes = {x["check"]: x["outcome"] for x in forged["validation"]["checks"]}
        assert outcomes["signature"] == "FAIL" and outcomes["issuer_key"] == "PASS" and len(outcomes) == 7
        revoked = c.get(f"/certificates/{REVOKED}").json()
        assert revoked["status"] == "revoked" and revoked["reason"] == "reference standard found out of tolerance"
        types = [e["event_type"] for e in revoked["history"]]
        assert types[0] == "CertificateIssued" and "CertificateRevoked" in types and "CertificateValidated" in types
        assert c.get("/certificates/DCC-NOPE").status_code == 404


def _log_key(api_world) -> HybridPublicKey:
    return HybridPublicKey.load(api_world.run_dir / "keys" / "audit-log.pub.json")


def test_verify_is_public_and_its_proof_checks_with_the_log_key_only(api_world) -> None:
    with api_world.client() as c:  # no token
        v = c.get(f"/verify/{VALID}").json()
    assert v["status"] == "valid" and v["twin_id"] == TWIN and v["validation"]["verdict"] == "VALID"
    assert v["signature_check"]["outcome"] == "PASS"
    assert sorted(s["algorithm"] for s in v["signatures"]) == ["Ed25519", "ML_DSA_65"]
    assert v["issuer_key"]["valid_at_issue"] is True and v["issuer_key"]["status"] == "active"
    p = v["proof"]
    assert p["event_id"] == api_world.issued_event_id(VALID) and p["source"]["event_type"] == "CertificateIssued"
    # what a browser does: the leaf hash from the leaf's input, the path to the root, the checkpoint's signatures
    data = base64.b64decode(p["leaf_data"])
    leaf = hashlib.sha256(b"\x00" + data).digest()
    assert base64.b64encode(leaf).decode() == p["leaf_hash"] and p["leaf_data_matches"] is True
    cp = verify_checkpoint(p["checkpoint"]["text"], _log_key(api_world))
    assert cp.size == p["tree_size"] and base64.b64encode(cp.root).decode() == p["checkpoint"]["root"]
    assert p["checkpoint"]["body"] == cp.body
    verify_inclusion(p["leaf_index"], p["tree_size"], leaf, [base64.b64decode(h) for h in p["hashes"]], cp.root)
    # the leaf's input is the Kafka record: topic without prefix, partition, offset, key, value (docs/audit.md)
    topic_len = int.from_bytes(data[1:3], "big")
    assert data[0] == 1 and data[3:3 + topic_len] == b"qi.certificates.v1"
    on_disk = json.loads((api_world.run_dir / "keys" / "audit-log.pub.json").read_text())
    assert {k: v["log_public_key"][k] for k in ("key_id", "ed25519", "ml_dsa")} == \
        {k: on_disk[k] for k in ("key_id", "ed25519", "ml_dsa")}


def test_verify_tells_revoked_and_invalid_apart(api_world) -> None:
    with api_world.client() as c:
        revoked = c.get(f"/verify/{REVOKED}").json()
        forged = c.get(f"/verify/{FORGED}").json()
        unaccredited = c.get(f"/verify/{UNACCREDITED}").json()
        missing = c.get("/verify/DCC-UNKNOWN")
    assert revoked["status"] == "revoked" and revoked["proof"] is not None
    assert forged["status"] == "invalid" and forged["signature_check"]["outcome"] == "FAIL"
    assert unaccredited["status"] == "invalid"
    assert {x["check"]: x["outcome"] for x in unaccredited["validation"]["checks"]}["accreditation"] == "FAIL"
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_sensor_latest_and_24h_downsampled(api_world) -> None:
    now = api_world.now
    with api_world.client(Role.reader) as c:
        latest = c.get(f"/sensors/{TWIN}/{SENSOR}/latest").json()
        assert latest["reading"]["unit"] == "kPa" and latest["score"]["model_name"] == "test"
        assert latest["reading"]["occurred_at"].startswith((now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
        empty = c.get(f"/sensors/{TWIN}/nope/latest").json()
        assert empty["reading"] is None and empty["score"] is None

        window = {"from": (now - timedelta(hours=24)).isoformat(), "to": now.isoformat()}
        raw = c.get(f"/sensors/{TWIN}/{SENSOR}/readings", params={**window, "max_points": 5000}).json()
        assert len(raw["points"]) == READINGS and not raw["downsampled"]
        spike = max(raw["points"], key=lambda p: p["value"])
        assert spike["anomaly"] is True and spike["score"] == pytest.approx(0.99)
        assert all(p["score"] is not None for p in raw["points"])
        small = c.get(f"/sensors/{TWIN}/{SENSOR}/readings", params={**window, "max_points": 100}).json()
        assert small["downsampled"] and len(small["points"]) <= 100
        assert sum(p["n"] for p in small["points"]) == READINGS
        assert sum(p["anomaly"] for p in small["points"]) == 1
        assert max(p["max"] for p in small["points"]) == spike["value"]
        default = c.get(f"/sensors/{TWIN}/{SENSOR}/readings").json()  # the last 24 h by default
        assert 0 < sum(p["n"] for p in default["points"]) <= READINGS and default["bucket_s"] == pytest.approx(86.4)


def test_sensor_ranges_asked_together_equal_each_asked_alone(api_world) -> None:
    """Decision 0068: requests of a sensor that arrive together share one warehouse query (their
    ranges as an array); each answer must be the one its range gets when asked alone."""
    from concurrent.futures import ThreadPoolExecutor

    now = api_world.now
    asks = [{"from": (now - timedelta(hours=24, minutes=7 * k)).isoformat(),
             "to": (now - timedelta(minutes=7 * k + (k % 3))).isoformat(),
             "max_points": [10, 100, 1000, 5000][k % 4]} for k in range(24)]
    asks.append({"from": (now - timedelta(hours=2)).isoformat(), "to": (now - timedelta(hours=1)).isoformat()})
    asks.append({"from": (now - timedelta(days=3)).isoformat(), "to": (now - timedelta(days=2)).isoformat()})
    url = f"/sensors/{TWIN}/{SENSOR}/readings"
    with api_world.client(Role.reader) as c:
        alone = [c.get(url, params=a) for a in asks]
    def together(a):
        with api_world.client(Role.reader) as c:
            return c.get(url, params=a)
    with ThreadPoolExecutor(len(asks)) as pool:
        crowd = list(pool.map(together, asks))
    for a, one, many in zip(asks, alone, crowd):
        assert one.status_code == 200 and many.status_code == 200, (one.text[:200], many.text[:200])
        assert one.json() == many.json(), a
    assert alone[-1].json()["points"] == []  # nothing three days ago
    assert sum(p["n"] for p in alone[0].json()["points"]) == READINGS  # the first window holds the whole day


def test_alerts_newest_first_and_by_twin(api_world) -> None:
    with api_world.client(Role.reader) as c:
        alerts = c.get("/alerts", params={"twin_id": TWIN}).json()["items"]
        assert [a["state"] for a in alerts] == ["CLEARED", "RAISED"]
        first = c.get("/alerts", params={"limit": 1}).json()
        assert len(first["items"]) == 1 and first["next_before"] is not None
        older = c.get("/alerts", params={"before": first["next_before"]}).json()["items"]
        assert [a["state"] for a in older] == ["RAISED"]
        assert c.get("/alerts", params={"twin_id": "mass-0003"}).json()["items"] == []


def test_registry_as_of_a_time(api_world) -> None:
    with api_world.client(Role.auditor) as c:
        before = c.get("/registry/as-of", params={"at": "2026-10-01T00:30:00Z", "mode": "valid_at"}).json()
        assert before["twins"] == [] and len(before["issuer_keys"]) == 2
        later = c.get("/registry/as-of", params={"at": "2026-10-10T00:00:00Z", "mode": "valid_at"}).json()
        assert {t["twin_id"] for t in later["twins"]} >= {"gauge-0001", "thermo-0002", "mass-0003"}
        revoked = {x["certificate_id"]: x["status"] for x in later["certificates"]}
        assert revoked[REVOKED] != "REVOKED"  # revoked on 21 October, not yet
        after = c.get("/registry/as-of", params={"at": "2026-11-01T00:00:00Z", "mode": "valid_at",
                                                 "id": REVOKED}).json()
        assert [x["status"] for x in after["certificates"]] == ["REVOKED"] and after["twins"] == []
        # as recorded: everything was recorded during the test run, so nothing was known last year
        assert c.get("/registry/as-of", params={"at": "2025-01-01T00:00:00Z"}).json()["certificates"] == []


def test_audit_checkpoint_and_proof(api_world) -> None:
    key = _log_key(api_world)
    with api_world.client(Role.auditor) as c:
        cp = c.get("/audit/checkpoint").json()
        verify_checkpoint(cp["text"], key)
        eid = api_world.issued_event_id(REVOKED)
        p = c.get(f"/audit/proof/{eid}").json()
        checked = verify_checkpoint(p["checkpoint"]["text"], key)
        verify_inclusion(p["leaf_index"], p["tree_size"], base64.b64decode(p["leaf_hash"]),
                         [base64.b64decode(h) for h in p["hashes"]], checked.root)
        assert c.get("/audit/proof/00000000-0000-0000-0000-000000000000").status_code == 404
        assert c.get("/audit/proof/not-a-uuid").status_code == 422
    with api_world.client() as c:
        on_disk = json.loads((api_world.run_dir / "keys" / "audit-log.pub.json").read_text())
        assert c.get("/audit/public-key").json()["ml_dsa"] == on_disk["ml_dsa"]
