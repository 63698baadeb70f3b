"""Fuzz: >= 1,000 malformed records of every kind, interleaved with valid certificates.

Every malformed one must be in the dead-letter topic with its reason, every valid one
must have its verdict, and the one worker process must live through all of it.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct

import pytest

from events.models import SensorReading
from events.publisher import OutgoingRecord
from qi.platform import Platform
from tests.conftest import make_settings
from tests.streams.validation import world as w
from tests.streams.validation.stack import Outputs, WorkerProcess, publish, publish_raw, worker_env

pytestmark = pytest.mark.stack

N_VALID = 150
N_BAD_SIGNATURE = 100
N_OTHER = 1000


def test_fuzz_malformed_records_are_dead_lettered_and_the_worker_survives(local_stack, stack_env, tmp_path) -> None:
    rnd = random.Random(5)
    prefix = f"fz{os.getpid()}."
    platform = Platform(make_settings(local_stack, prefix))
    asyncio.run(platform.ensure_topics())
    serde = asyncio.run(platform.serde())
    topics = platform.topics
    certs_topic, issuers_topic, twins_topic = (topics.topic(f) for f in ("certificates", "issuers", "twins"))

    valid = [w.certificate(w.uid("F"), "lab", "lab/1", "tw-1") for _ in range(N_VALID)]
    bad_sig = []
    for _ in range(N_BAD_SIGNATURE):
        c = w.certificate(w.uid("B"), "lab", "lab/1", "tw-1")
        i = rnd.randrange(2)
        sig = bytearray(c.signatures[i].value)
        sig[rnd.randrange(len(sig))] ^= 0x01
        sigs = list(c.signatures)
        sigs[i] = sigs[i].model_copy(update={"value": bytes(sig)})
        bad_sig.append(c.model_copy(update={"signatures": sigs}))
    template = serde.encode_event(valid[0])
    known_ids = {serde.schema_id(n) for n in ("CertificateIssued", "SensorReading", "TwinRegistered")}

    def malformed(i: int) -> tuple[OutgoingRecord, set[str]]:
        kind = i % 7
        key = f"fuzz-{i}".encode()
        if kind == 0:  # random bytes, any length (also empty)
            value = rnd.randbytes(rnd.randrange(0, 120))
            return OutgoingRecord(rnd.choice([certs_topic, issuers_topic, twins_topic]), key, value, None), \
                {"NOT_FRAMED", "UNKNOWN_SCHEMA", "BAD_PAYLOAD"}
        if kind == 1:  # truncated frame of a real certificate
            return OutgoingRecord(certs_topic, key, template[: rnd.randrange(5, len(template) - 40)], None), \
                {"BAD_PAYLOAD"}
        if kind == 2:  # unknown schema id
            sid = rnd.randrange(1, 2**31)
            while sid in known_ids:
                sid = rnd.randrange(1, 2**31)
            return OutgoingRecord(certs_topic, key, b"\x00" + struct.pack(">I", sid) + template[5:], None), \
                {"UNKNOWN_SCHEMA"}
        if kind == 3:  # a valid record of the wrong type for the topic
            r = SensorReading(occurred_at=w.T0, source="fuzz", twin_id="tw-1", sensor_id="s", quantity="p",
                              value=1.0, unit="kPa")
            topic = rnd.choice([certs_topic, issuers_topic, twins_topic])
            return OutgoingRecord(topic, key, serde.encode_event(r), None), {"VALIDATION_FAILED"}
        if kind == 4:  # schema-valid, semantically invalid: aggregate_version 0
            rec = valid[i % N_VALID].model_copy(update={"certificate_id": f"Z-{i}"}).to_avro()
            rec["aggregate_version"] = 0
            return OutgoingRecord(certs_topic, f"Z-{i}".encode(), serde.encode("CertificateIssued", rec), None), \
                {"VALIDATION_FAILED"}
        if kind == 5:  # schema-valid, semantically invalid: the key is not the certificate id
            cert = valid[i % N_VALID]
            return OutgoingRecord(certs_topic, key, serde.encode_event(cert), None), {"VALIDATION_FAILED"}
        # undecodable key on a real certificate
        cert = valid[i % N_VALID]
        return OutgoingRecord(certs_topic, b"\xff\xfe" + key, serde.encode_event(cert), None), {"VALIDATION_FAILED"}

    bad = [malformed(i) for i in range(N_OTHER)]
    good = [(OutgoingRecord(certs_topic, c.certificate_id.encode(), serde.encode_event(c), str(c.event_id)), c)
            for c in valid]
    signed_bad = [(OutgoingRecord(certs_topic, c.certificate_id.encode(), serde.encode_event(c), str(c.event_id)), c)
                  for c in bad_sig]
    stream: list[tuple[str, object, object]] = [("bad", r, kinds) for r, kinds in bad] + \
        [("good", r, c) for r, c in good] + [("sig", r, c) for r, c in signed_bad]
    rnd.shuffle(stream)

    worker = WorkerProcess(worker_env(stack_env, prefix), tmp_path / "worker.log")
    worker.start()
    try:
        asyncio.run(publish(platform, w.register("lab", "lab/1", ["calibration.pressure"]), w.twin("tw-1")))

        async def go():
            async with Outputs(platform) as out:
                deliveries = await publish_raw(platform, [r for _, r, _ in stream])
                where = [(d.topic, d.partition, d.offset) for d in deliveries]
                expect_dead = [where[i] for i, (k, _, _) in enumerate(stream) if k in ("bad", "sig")]
                await out.until(lambda: all(out.dead.get(p) for p in expect_dead)
                                and all(out.validated.get(str(c.event_id)) for k, _, c in stream if k != "bad"),
                                timeout_s=150)
                return out, where
        out, where = asyncio.run(go())
        assert worker.alive() and worker.starts == 1, worker.log()[-3000:]
    finally:
        worker.stop()

    n_malformed = 0
    for (kind, rec, extra), pos in zip(stream, where, strict=True):
        if kind == "good":
            assert out.verdict(extra)["verdict"] == "VALID"
            assert pos not in out.dead
            continue
        n_malformed += 1
        [dl] = {d["event_id"]: d for d in out.dead[pos]}.values()
        assert dl["original"] == rec.value and dl["error_message"]
        if kind == "sig":
            assert dl["error_kind"] == "BAD_SIGNATURE"
            v = out.verdict(extra)
            assert v["verdict"] == "INVALID" and [c["check"] for c in v["checks"] if c["outcome"] == "FAIL"] == \
                ["signature"]
        else:
            assert dl["error_kind"] in extra, (dl["error_kind"], dl["error_message"], extra)
    assert n_malformed >= 1000
    assert not [d for ds in out.dead.values() for d in ds if d["error_kind"] == "PROCESSING_ERROR"]
