"""Validation logic without a broker: the Judge over plain dict tables (fast unit tests)."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

import pytest

from events.reader import ConsumedRecord
from events.registry import BuiltinRegistry
from events.schemas import SchemaCatalog
from events.serde import Serde
from events.topics import TopicNames
from streams.validation.checks import ISSUED_CHECKS
from streams.validation.judge import Judge, JudgeConfig, Tables
from tests.streams.validation import world as w

TOPICS = TopicNames("")


@pytest.fixture(scope="module")
def serde() -> Serde:
    catalog = SchemaCatalog.load()
    s = Serde(catalog, BuiltinRegistry(catalog), TOPICS)
    asyncio.run(s.prepare())
    return s


class Harness:
    def __init__(self, serde: Serde, **config) -> None:
        self.serde = serde
        self.tables = Tables({}, {}, {}, {})
        self.judge = Judge(serde, TOPICS, self.tables, JudgeConfig(**config))
        self.offset = 0

    def record(self, event, *, family: str | None = None, value: bytes | None = None, key: bytes | None = None):
        self.offset += 1
        topic = TOPICS.topic(family or event.TOPIC_FAMILY)
        return ConsumedRecord(topic, 0, self.offset, 0, key if key is not None else event.key().encode(),
                              value if value is not None else self.serde.encode_event(event), None, None)

    def feed(self, *events, now=None):
        out = []
        for e in events:
            rec = self.record(e)
            fam = e.TOPIC_FAMILY
            handler = {"issuers": self.judge.on_issuer, "twins": self.judge.on_twin}.get(fam)
            if handler is not None:
                out += asyncio.run(handler(rec))
            else:
                out += asyncio.run(self.judge.on_certificate(rec, now=now or w.T0))
        return [self.decode(r) for r in out]

    def decode(self, r):
        d = self.serde.decode(r.value)
        return d.event_type, d.record

    def world(self):
        return self.feed(w.register("lab", "lab/1", ["calibration.pressure"]), w.twin("tw-1"))


def verdicts(outputs):
    return [rec for kind, rec in outputs if kind == "CertificateValidated"]


def outcome(verdict, check):
    return next(c for c in verdict["checks"] if c["check"] == check)


@pytest.fixture
def h(serde) -> Harness:
    return Harness(serde)


def test_a_signed_certificate_is_valid_with_every_check_reported(h: Harness) -> None:
    assert h.world() == []
    cert = w.certificate("C-1", "lab", "lab/1", "tw-1")
    [v] = verdicts(h.feed(cert))
    assert v["verdict"] == "VALID"
    assert [c["check"] for c in v["checks"]] == list(ISSUED_CHECKS)
    assert all(c["outcome"] == "PASS" and c["detail"] for c in v["checks"])
    assert v["causation_id"] == str(cert.event_id)


def _fails(h: Harness, cert, check: str):
    h.world()
    out = h.feed(cert)
    [v] = verdicts(out)
    assert v["verdict"] == "INVALID"
    failed = [c["check"] for c in v["checks"] if c["outcome"] == "FAIL"]
    assert check in failed, v["checks"]
    return v, out


def test_signature_over_changed_content_fails_signature(h: Harness) -> None:
    cert = w.certificate("C-2", "lab", "lab/1", "tw-1")
    v, out = _fails(h, cert.model_copy(update={"certificate_kind": "calibration.pressure2"}), "signature")
    assert ("DeadLetter", ) == tuple(k for k, _ in out if k == "DeadLetter")
    assert [r["error_kind"] for k, r in out if k == "DeadLetter"] == ["BAD_SIGNATURE"]


def test_forged_ed25519_with_valid_ml_dsa_is_invalid(h: Harness) -> None:
    cert = w.certificate("C-3", "lab", "lab/1", "tw-1")
    forged = w.key("forger/1").sign(b"x")[0].model_copy(update={"key_id": "lab/1"})
    v, _ = _fails(h, cert.model_copy(update={"signatures": [forged, cert.signatures[1]]}), "signature")
    assert "Ed25519 signature does not verify" in outcome(v, "signature")["detail"]
    assert "ML_DSA_65" not in outcome(v, "signature")["detail"]


def test_forged_ml_dsa_with_valid_ed25519_is_invalid(h: Harness) -> None:
    cert = w.certificate("C-4", "lab", "lab/1", "tw-1")
    forged = w.key("forger/1").sign(b"x")[1].model_copy(update={"key_id": "lab/1"})
    v, _ = _fails(h, cert.model_copy(update={"signatures": [cert.signatures[0], forged]}), "signature")
    assert "ML_DSA_65 signature does not verify" in outcome(v, "signature")["detail"]


def test_kind_outside_the_accreditation_scope_fails_accreditation(h: Harness) -> None:
    _fails(h, w.certificate("C-5", "lab", "lab/1", "tw-1", kind="calibration.mass"), "accreditation")


def test_decommissioned_twin_fails_twin(h: Harness) -> None:
    h.feed(w.decommission("tw-1"))
    _fails(h, w.certificate("C-6", "lab", "lab/1", "tw-1"), "twin")


def test_inverted_validity_fails_validity_window(h: Harness) -> None:
    _fails(h, w.certificate("C-7", "lab", "lab/1", "tw-1", valid_days=-1), "validity_window")


@pytest.mark.parametrize("bad", [{"expanded_uncertainty": -0.1}, {"coverage_factor": 0.0}, {"unit": " "}])
def test_malformed_results_fail_results(h: Harness, bad) -> None:
    _fails(h, w.certificate("C-8", "lab", "lab/1", "tw-1", result=bad), "results")


def test_non_finite_result_fails_results_and_is_dead_lettered(h: Harness) -> None:
    cert = w.certificate("C-9", "lab", "lab/1", "tw-1")
    bad = cert.model_copy(update={"results": [cert.results[0].model_copy(update={"value": math.inf})]})
    v, out = _fails(h, bad, "results")
    assert {r["error_kind"] for k, r in out if k == "DeadLetter"} == {"BAD_SIGNATURE"}


def test_key_revoked_before_issue_fails_issuer_key_but_not_earlier_certificates(h: Harness) -> None:
    h.world()
    h.feed(w.revoke_key("lab", "lab/1", w.T0))
    [before] = verdicts(h.feed(w.certificate("C-10", "lab", "lab/1", "tw-1", issued_at=w.T0 - timedelta(seconds=1))))
    [after] = verdicts(h.feed(w.certificate("C-11", "lab", "lab/1", "tw-1", issued_at=w.T0)))
    assert before["verdict"] == "VALID"
    assert after["verdict"] == "INVALID" and outcome(after, "issuer_key")["outcome"] == "FAIL"


def test_duplicate_certificate_id_fails_lifecycle_and_redelivery_is_not_a_duplicate(h: Harness) -> None:
    h.world()
    cert = w.certificate("C-12", "lab", "lab/1", "tw-1")
    [first] = verdicts(h.feed(cert))
    [again] = verdicts(h.feed(cert))  # redelivery of the same event
    assert again == first
    [dup] = verdicts(h.feed(w.certificate("C-12", "lab", "lab/1", "tw-1")))
    assert dup["verdict"] == "INVALID" and outcome(dup, "lifecycle")["outcome"] == "FAIL"
    assert dup["event_id"] != first["event_id"]


def test_revocation_rules(h: Harness) -> None:
    h.world()
    h.feed(w.certificate("C-13", "lab", "lab/1", "tw-1"))
    [ok] = verdicts(h.feed(w.revoke_cert("C-13")))
    [twice] = verdicts(h.feed(w.revoke_cert("C-13", version=3)))
    [unknown] = verdicts(h.feed(w.revoke_cert("C-nope")))
    assert ok["verdict"] == "VALID" and [c["check"] for c in ok["checks"]] == ["lifecycle"]
    assert twice["verdict"] == "INVALID" and "already revoked" in twice["checks"][0]["detail"]
    assert unknown["verdict"] == "INVALID" and "unknown" in unknown["checks"][0]["detail"]


def test_superseding_with_an_older_certificate_fails_lifecycle(h: Harness) -> None:
    h.world()
    h.feed(w.certificate("C-new", "lab", "lab/1", "tw-1", issued_at=w.T0 + timedelta(days=10)),
           w.certificate("C-old", "lab", "lab/1", "tw-1", issued_at=w.T0 - timedelta(days=10)))
    [bad] = verdicts(h.feed(w.supersede("C-new", "C-old")))
    [good] = verdicts(h.feed(w.supersede("C-old", "C-new")))
    assert bad["verdict"] == "INVALID" and "older" in bad["checks"][0]["detail"]
    assert good["verdict"] == "VALID"


def test_certificate_before_its_twin_is_pending_then_validated(h: Harness) -> None:
    h.feed(w.register("lab", "lab/1", ["calibration.pressure"]))
    cert = w.certificate("C-14", "lab", "lab/1", "tw-late")
    assert h.feed(cert) == []
    state = h.tables.certs[b"C-14"]
    assert b"PENDING" in state and b"twin:tw-late" in state
    assert not h.judge.due(_state(h, "C-14"), w.T0)
    revoke = w.revoke_cert("C-14")
    assert h.feed(revoke) == []  # queued behind the pending issuance
    h.feed(w.twin("tw-late"))
    assert h.judge.due(_state(h, "C-14"), w.T0)
    out = verdicts([h.decode(r) for r in asyncio.run(h.judge.recheck("C-14", now=w.T0))])
    assert [(v["causation_id"], v["verdict"]) for v in out] == [(str(cert.event_id), "VALID"),
                                                                (str(revoke.event_id), "VALID")]


def test_pending_is_bounded(serde) -> None:
    h = Harness(serde, pending_timeout=timedelta(seconds=60))
    h.feed(w.register("lab", "lab/1", ["calibration.pressure"]))
    h.feed(w.certificate("C-15", "lab", "lab/1", "tw-never"))
    later = w.T0 + timedelta(seconds=61)
    assert h.judge.due(_state(h, "C-15"), later)
    [v] = verdicts([h.decode(r) for r in asyncio.run(h.judge.recheck("C-15", now=later))])
    assert v["verdict"] == "INVALID"
    assert outcome(v, "twin")["outcome"] == "FAIL" and "after 61 s" in outcome(v, "twin")["detail"]


def test_expiring_alert_once(serde) -> None:
    h = Harness(serde, expiring_lead=timedelta(days=30))
    h.world()
    h.feed(w.certificate("C-16", "lab", "lab/1", "tw-1", valid_days=60))
    state = _state(h, "C-16")
    early, due = w.T0 + timedelta(days=20), w.T0 + timedelta(days=40)
    assert not h.judge.due(state, early)
    assert h.judge.due(state, due)
    out = [h.decode(r) for r in asyncio.run(h.judge.recheck("C-16", now=due))]
    assert [k for k, _ in out] == ["CertificateExpiring"]
    assert out[0][1]["certificate_id"] == "C-16" and out[0][1]["twin_id"] == "tw-1"
    assert not h.judge.due(_state(h, "C-16"), due)
    assert asyncio.run(h.judge.recheck("C-16", now=due)) == []


def test_poison_is_dead_lettered_with_its_reason(h: Harness) -> None:
    reading = w.twin("tw-x")
    cases = {
        "NOT_FRAMED": h.record(reading, family="certificates", value=b"garbage"),
        "UNKNOWN_SCHEMA": h.record(reading, family="certificates", value=b"\x00\x7f\xff\xff\xfe" + b"x" * 20),
        "BAD_PAYLOAD": h.record(reading, family="certificates", value=h.serde.encode_event(
            w.certificate("C-17", "lab", "lab/1", "tw-1"))[:60]),
        "VALIDATION_FAILED": h.record(reading, family="certificates"),  # a twin event on the certificates topic
    }
    for kind, rec in cases.items():
        [(t, dl)] = [h.decode(r) for r in asyncio.run(h.judge.on_certificate(rec))]
        assert t == "DeadLetter" and dl["error_kind"] == kind and dl["source_offset"] == rec.offset
        assert dl["original"] == rec.value and dl["error_message"]
    bad_key = h.record(w.certificate("C-18", "lab", "lab/1", "tw-1"), key=b"\xff\xfe")
    [(t, dl)] = [h.decode(r) for r in asyncio.run(h.judge.on_certificate(bad_key))]
    assert dl["error_kind"] == "VALIDATION_FAILED" and "UTF-8" in dl["error_message"]


def _state(h: Harness, cid: str):
    from streams.validation.facts import CertState

    return CertState.from_bytes(h.tables.certs[cid.encode()])
