"""`qi worker validate` on the real local stack: verdicts, every check, pending, expiry."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime, timedelta

import pytest

from qi.platform import Platform
from tests.conftest import make_settings
from tests.streams.validation import world as w
from tests.streams.validation.stack import Outputs, WorkerProcess, publish, worker_env

pytestmark = pytest.mark.stack
_n = itertools.count()


@pytest.fixture(scope="module")
def env(local_stack, stack_env, tmp_path_factory):
    prefix = f"v{os.getpid()}-{next(_n)}."
    platform = Platform(make_settings(local_stack, prefix))
    asyncio.run(platform.ensure_topics())
    worker = WorkerProcess(worker_env(stack_env, prefix, QI_VALIDATION_EXPIRING_LEAD_S="60"),
                           tmp_path_factory.mktemp("validate") / "worker.log")
    worker.start()
    # The trust registry and twins every test shares.
    asyncio.run(publish(platform, w.register("lab", "lab/1", ["calibration.pressure"]),
                        w.register("lab-r", "lab-r/1", ["calibration.pressure"]),
                        w.revoke_key("lab-r", "lab-r/1", w.T0),
                        w.twin("tw-1"), w.twin("tw-old"), w.decommission("tw-old")))
    yield platform, worker
    alive = worker.alive()
    worker.stop()
    assert alive, "the worker died:\n" + worker.log()[-3000:]


def run(platform: Platform, *events, expect=None, timeout_s: float = 60.0):
    """Publish events, wait until each certificate event has a verdict; return the Outputs."""
    async def go():
        async with Outputs(platform) as out:
            await publish(platform, *events)
            wanted = expect if expect is not None else [e for e in events if e.TOPIC_FAMILY == "certificates"]
            await out.until(lambda: all(out.validated.get(str(e.event_id)) for e in wanted), timeout_s)
            return out
    return asyncio.run(go())


def failed(verdict) -> list[str]:
    return [c["check"] for c in verdict["checks"] if c["outcome"] == "FAIL"]


def test_a_signed_certificate_validates(env) -> None:
    platform, _ = env
    cert = w.certificate(w.uid("C"), "lab", "lab/1", "tw-1")
    v = run(platform, cert).verdict(cert)
    assert v["verdict"] == "VALID", v["checks"]
    assert [c["outcome"] for c in v["checks"]] == ["PASS"] * 7
    assert v["certificate_id"] == cert.certificate_id and v["certificate_version"] == 1


@pytest.mark.parametrize(("check", "build"), [
    ("issuer_key", lambda cid: w.certificate(cid, "lab-r", "lab-r/1", "tw-1", issued_at=w.T0 + timedelta(days=1))),
    ("signature", lambda cid: w.certificate(cid, "lab", "lab/1", "tw-1").model_copy(
        update={"certificate_kind": "calibration.pressure.forged"})),
    ("accreditation", lambda cid: w.certificate(cid, "lab", "lab/1", "tw-1", kind="calibration.mass")),
    ("twin", lambda cid: w.certificate(cid, "lab", "lab/1", "tw-old")),
    ("validity_window", lambda cid: w.certificate(cid, "lab", "lab/1", "tw-1", valid_days=-30)),
    ("results", lambda cid: w.certificate(cid, "lab", "lab/1", "tw-1", result={"expanded_uncertainty": -1.0})),
])
def test_each_failed_check_makes_an_invalid_verdict_naming_it(env, check, build) -> None:
    platform, _ = env
    cert = build(w.uid("C"))
    v = run(platform, cert).verdict(cert)
    assert v["verdict"] == "INVALID"
    assert failed(v) == [check] or (check == "signature" and "signature" in failed(v)), v["checks"]
    assert len(v["checks"]) == 7  # every check reported, not only the first failure


def test_lifecycle_check_duplicate_id_and_illegal_revocation(env) -> None:
    platform, _ = env
    cid = w.uid("C")
    first = w.certificate(cid, "lab", "lab/1", "tw-1")
    duplicate = w.certificate(cid, "lab", "lab/1", "tw-1")
    revoke, revoke_again = w.revoke_cert(cid), w.revoke_cert(cid, version=3)
    out = run(platform, first, duplicate, revoke, revoke_again)
    assert out.verdict(first)["verdict"] == "VALID"
    assert failed(out.verdict(duplicate)) == ["lifecycle"]
    assert out.verdict(revoke)["verdict"] == "VALID"
    assert failed(out.verdict(revoke_again)) == ["lifecycle"]


def test_forged_ed25519_with_valid_ml_dsa_and_the_reverse_are_invalid(env) -> None:
    platform, _ = env
    forger = w.key("forger/1")
    a = w.certificate(w.uid("C"), "lab", "lab/1", "tw-1")
    b = w.certificate(w.uid("C"), "lab", "lab/1", "tw-1")
    from events.canonical import certificate_payload
    fa = forger.sign(certificate_payload(a))[0].model_copy(update={"key_id": "lab/1"})
    fb = forger.sign(certificate_payload(b))[1].model_copy(update={"key_id": "lab/1"})
    a = a.model_copy(update={"signatures": [fa, a.signatures[1]]})
    b = b.model_copy(update={"signatures": [b.signatures[0], fb]})
    out = run(platform, a, b)
    assert failed(out.verdict(a)) == ["signature"] and failed(out.verdict(b)) == ["signature"]
    assert "Ed25519 signature does not verify" in out.verdict(a)["checks"][1]["detail"]
    assert "ML_DSA_65 signature does not verify" in out.verdict(b)["checks"][1]["detail"]
    kinds = {d["error_kind"] for dl in out.dead.values() for d in dl}
    assert kinds == {"BAD_SIGNATURE"}


def test_a_revoked_key_invalidates_certificates_issued_after_not_before(env) -> None:
    platform, _ = env
    before = w.certificate(w.uid("C"), "lab-r", "lab-r/1", "tw-1", issued_at=w.T0 - timedelta(minutes=1))
    after = w.certificate(w.uid("C"), "lab-r", "lab-r/1", "tw-1", issued_at=w.T0 + timedelta(minutes=1))
    out = run(platform, before, after)
    assert out.verdict(before)["verdict"] == "VALID"
    assert failed(out.verdict(after)) == ["issuer_key"]


def test_a_certificate_before_its_twin_is_validated_once_the_twin_arrives(env) -> None:
    platform, _ = env
    tid = w.uid("tw")
    cert = w.certificate(w.uid("C"), "lab", "lab/1", tid)

    async def go():
        async with Outputs(platform) as out:
            await publish(platform, cert)
            await asyncio.sleep(3)
            await out.poll()
            assert not out.validated.get(str(cert.event_id)), "judged before its twin existed"
            await publish(platform, w.twin(tid))
            await out.until(lambda: out.validated.get(str(cert.event_id)), 30)
            return out
    out = asyncio.run(go())
    assert out.verdict(cert)["verdict"] == "VALID"


def test_expiring_alert_once_per_certificate(env) -> None:
    platform, _ = env
    now = datetime.now(UTC)
    # valid_until 64 s away, lead 60 s: due about 4 s after validation, by the timer.
    cert = w.certificate(w.uid("C"), "lab", "lab/1", "tw-1", issued_at=now - timedelta(hours=1),
                         valid_until=now + timedelta(seconds=64))

    async def go():
        async with Outputs(platform) as out:
            await publish(platform, cert)
            await out.until(lambda: out.validated.get(str(cert.event_id)), 60)
            assert not out.expiring.get(cert.certificate_id)
            await out.until(lambda: out.expiring.get(cert.certificate_id), 30)
            await asyncio.sleep(3)
            await out.poll()
            return out
    out = asyncio.run(go())
    assert out.verdict(cert)["verdict"] == "VALID"
    [alert] = out.expiring[cert.certificate_id]
    assert alert["lead_time_seconds"] == 60 and alert["twin_id"] == "tw-1"


def test_the_worker_announces_health_for_qi_ps(env, local_stack) -> None:
    import json

    import httpx

    _, worker = env
    announce = local_stack.run_dir / "health" / f"validate-{worker.proc.pid}.json"
    assert announce.exists()
    url = json.loads(announce.read_text())["url"]
    h = httpx.get(f"{url}/health", timeout=5).json()
    assert h["live"] is True and h["ready"] is True and h["issuers"] >= 2 and h["twins"] >= 2
    assert httpx.get(f"{url}/ready", timeout=5).status_code == 200
