"""Tampering with a copy of the log is detected by `verify`, which names where.

The test builds a log, then rewrites its topics into a second deployment (another topic prefix,
same log id and key): a faithful copy verifies; a changed byte, a deleted record, two swapped
records and a head signed by another key each give a first divergence at the right place.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from aiokafka import AIOKafkaProducer

from events.models import Signature
from events.signing import HybridKeyPair, HybridPublicKey
from streams.audit.checkpoint import checkpoint_body, sign_head
from streams.audit import fetch
from streams.audit.hashing import EMPTY_ROOT
from streams.audit.logcheck import read_raw, verify_log
from streams.audit.verifier import VerificationError, verify_checkpoint
from tests.conftest import make_settings
from tests.fixtures import example_event
from tests.streams.audit.helpers import audit_platform, audit_worker, wait_for_size
from tests.streams.helpers import readings
from qi.platform import Platform

pytestmark = pytest.mark.stack


async def _records(p: Platform, families: list[str]) -> dict[str, list]:
    out: dict[str, list] = {}
    await read_raw(p.endpoints().kafka, [p.topics.topic(f) for f in families],
                   lambda m: out.setdefault(m.topic, []).append(m))
    for msgs in out.values():
        msgs.sort(key=lambda m: (m.partition, m.offset))
    return out


async def _copy(src: Platform, dst: Platform, families: list[str], edit=None) -> None:
    """Rewrite every record of ``families`` from src into dst, partition by partition, in order."""
    await dst.ensure_topics()
    data = await _records(src, families)
    prod = AIOKafkaProducer(bootstrap_servers=dst.endpoints().kafka, acks="all")
    await prod.start()
    try:
        for topic, msgs in data.items():
            family = src.topics.family_of(topic)
            rows = [(m.partition, m.key, m.value) for m in msgs]
            if edit is not None:
                rows = edit(family, rows)
            for part in sorted({r[0] for r in rows}):
                for _, k, v in [r for r in rows if r[0] == part]:
                    await prod.send(dst.topics.topic(family), v, key=k, partition=part)
        await prod.flush()
    finally:
        await prod.stop()


async def _verify(p: Platform, pub):
    a = p.settings.audit
    return await verify_log(
        bootstrap=p.endpoints().kafka, serde=await p.serde(), prefix=p.topics.prefix,
        audit_topic=p.topics.topic("audit"), source_topics=[p.topics.topic(f) for f in a.families],
        log_id=a.log_id, public_key=pub)


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logkeys")


@pytest.fixture(scope="module")
def built_log(catalog, key_dir, local_stack):
    """A log of ~600 leaves over twins, certificates and readings, heads every 100 leaves (built once)."""
    platform = Platform(make_settings(local_stack, f"tamper{os.getpid()}."))
    p = audit_platform(platform, key_dir, head_every_entries=100, head_every_s=60.0)

    async def build():
        await p.ensure_topics()
        serde = await p.serde()
        events = readings(500, sensors=5)
        events += [example_event(catalog, n_, i) for i in range(25) for n_ in ("TwinRegistered", "CertificateIssued")]
        async with p.publisher(serde) as pub:
            await pub.publish_many(events)
        async with audit_worker(p) as proc:
            await wait_for_size(proc, len(events))
        return len(events)

    size = asyncio.run(build())
    copies = iter(range(100))

    def copy_platform() -> Platform:
        prefix = f"{platform.settings.kafka.topic_prefix}copy{next(copies)}."
        s = make_settings(local_stack, prefix).model_copy(update={"audit": p.settings.audit})
        return Platform(s)

    return p, HybridPublicKey.load(key_dir / "audit-log.pub.json"), size, copy_platform


FAMILIES = ["twins", "issuers", "certificates", "readings", "validations", "alerts", "deadletter", "audit"]


def _run_copy(built_log, edit=None, families=FAMILIES):
    src, pub, size, copy_platform = built_log
    dst = copy_platform()

    async def go():
        await _copy(src, dst, families, edit)
        return await _verify(dst, pub)

    return asyncio.run(go())


def _edit_topic(family: str, fn):
    def edit(fam, rows):
        return fn(rows) if fam == family else rows
    return edit


def test_a_faithful_copy_verifies(built_log):
    report = _run_copy(built_log)
    assert report.ok, report.divergences
    assert report.leaves == built_log[2] and report.heads >= 5
    assert not report.leaf_by_leaf  # decided by the clean check


def test_verify_reads_the_records_the_consumer_reads(built_log):
    """The raw Fetch reader of verify returns every record the consumer returns, byte for byte."""
    src = built_log[0]
    topics = [src.topics.topic(f) for f in FAMILIES]
    want = asyncio.run(_records(src, FAMILIES))
    got: dict[str, list] = {}

    def take(chunk):
        got.setdefault(chunk.tp.topic, []).extend(
            (chunk.tp.partition, m.offset, m.key, m.value) for m in fetch.records(chunk))

    asyncio.run(fetch.read_chunks(src.endpoints().kafka, topics, take, partition_bytes=4096))  # many fetches
    assert {t: sorted(rows) for t, rows in got.items()} == {
        t: [(m.partition, m.offset, m.key, m.value) for m in msgs] for t, msgs in want.items()}
    assert sum(map(len, got.values())) > built_log[2]


def _audit_rows_edit(built_log, fn):
    """An edit of the audit topic's rows: ``fn(rows, decoded)`` with the rows' decoded events."""
    serde = asyncio.run(built_log[0].serde())

    def edit(rows):
        return fn(list(rows), [serde.decode(v, plain=True) for _, _, v in rows], serde)
    return _edit_topic("audit", edit)


def test_entries_published_twice_still_verify(built_log):
    """After a crash the worker publishes some AuditEntryAppended again (same bytes): still clean."""
    def republish(rows, decoded, _serde):
        entries = [r for r, d in zip(rows, decoded, strict=True) if d.event_type == "AuditEntryAppended"]
        return rows + entries[100:130]

    report = _run_copy(built_log, _audit_rows_edit(built_log, republish))
    assert report.ok, report.divergences
    assert report.leaves == built_log[2] and not report.leaf_by_leaf


def test_a_second_different_entry_for_a_leaf_is_a_conflict(built_log):
    def conflicting(rows, decoded, serde):
        for (part, k, _), d in zip(rows, decoded, strict=True):
            if d.event_type == "AuditEntryAppended" and d.record["leaf_index"] == 123:
                rec = dict(d.record, leaf_hash=bytes(32))
                return rows + [(part, k, serde.encode("AuditEntryAppended", rec))]
        raise AssertionError("no entry 123")

    report = _run_copy(built_log, _audit_rows_edit(built_log, conflicting))
    first = report.first
    assert first is not None and first.kind == "conflict" and first.leaf_index == 123
    assert report.leaf_by_leaf


def test_a_head_of_the_empty_tree_is_checked_too(built_log, key_dir):
    """A TreeHeadSigned of size 0 is checked against the empty root, one of a negative size is
    named (either once stopped every later head from being checked); signed by another key, the
    empty tree's head is named."""
    own = HybridKeyPair.load(key_dir, "audit-log")
    other = HybridKeyPair.generate(key_id=own.public.key_id)
    log_id = built_log[0].settings.audit.log_id

    def early_head(key, size=0):
        def add(rows, decoded, serde):
            for (part, k, _), d in zip(rows, decoded, strict=True):
                if d.event_type == "TreeHeadSigned":
                    rec = dict(d.record, tree_size=size, root_hash=EMPTY_ROOT, signatures=[
                        s.model_dump() for s in key.sign(checkpoint_body(log_id, size, EMPTY_ROOT).encode())])
                    return [(part, k, serde.encode("TreeHeadSigned", rec))] + rows
            raise AssertionError("no head")
        return add

    report = _run_copy(built_log, _audit_rows_edit(built_log, early_head(own)))
    assert report.ok, report.divergences
    report = _run_copy(built_log, _audit_rows_edit(built_log, early_head(other)))
    first = report.first
    assert first is not None and first.kind == "head_signature" and first.head_size == 0
    negative = early_head(own, -3)

    def negative_and_a_wrong_root(rows, decoded, serde):
        out = []
        for (part, k, v), d in zip(rows, decoded, strict=True):
            if d.event_type == "TreeHeadSigned" and d.record["tree_size"] == 300:
                v = serde.encode("TreeHeadSigned", dict(d.record, root_hash=bytes(32)))
            out.append((part, k, v))
        return negative(out, decoded, serde)

    report = _run_copy(built_log, _audit_rows_edit(built_log, negative_and_a_wrong_root))
    assert [(d.kind, d.head_size) for d in report.divergences] == [("head_root", -3), ("head_root", 300)]


def test_one_changed_byte_is_named(built_log):
    def flip(rows):
        rows = list(rows)
        part, k, v = rows[7]
        rows[7] = (part, k, v[:-3] + bytes([v[-3] ^ 0x01]) + v[-2:])
        return rows

    report = _run_copy(built_log, _edit_topic("certificates", flip))
    first = report.first
    assert first is not None and first.kind == "leaf_changed"
    assert first.topic == "qi.certificates.v1"
    src_rows = asyncio.run(_records(built_log[0], ["certificates"]))
    m = list(src_rows.values())[0][7]
    assert (first.partition, first.offset) == (m.partition, m.offset)


def test_a_deleted_record_is_named(built_log):
    src_rows = asyncio.run(_records(built_log[0], ["readings"]))
    victim = list(src_rows.values())[0][40]

    def delete(rows):
        idx = [i for i, r in enumerate(rows) if r[0] == victim.partition]
        # the record at (victim.partition, victim.offset): the n-th of its partition
        n = victim.offset - min(m.offset for m in list(src_rows.values())[0] if m.partition == victim.partition)
        return [r for i, r in enumerate(rows) if i != idx[n]]

    report = _run_copy(built_log, _edit_topic("readings", delete))
    first = report.first
    assert first is not None and first.kind in ("leaf_changed", "record_missing")
    assert (first.topic, first.partition, first.offset) == ("qi.readings.v1", victim.partition, victim.offset)


def test_two_swapped_records_are_named(built_log):
    src_rows = asyncio.run(_records(built_log[0], ["twins"]))
    msgs = list(src_rows.values())[0]
    part = msgs[0].partition
    same = [i for i, m in enumerate(msgs) if m.partition == part]
    a, b = same[1], same[3]

    def swap(rows):
        rows = list(rows)
        rows[a], rows[b] = rows[b], rows[a]
        return rows

    report = _run_copy(built_log, _edit_topic("twins", swap))
    first = report.first
    assert first is not None and first.kind == "leaf_changed"
    assert (first.topic, first.partition, first.offset) == ("qi.twins.v1", part, msgs[a].offset)
    assert any(d.offset == msgs[b].offset for d in report.divergences)


def _replace_head(built_log, make_sigs):
    """Copy with the head of size 300 replaced by one whose signatures come from ``make_sigs``."""
    src, pub, size, _ = built_log
    serde = asyncio.run(src.serde())
    log_id = src.settings.audit.log_id

    def edit(rows):
        out = []
        for part, k, v in rows:
            d = serde.decode(v)
            if d.event_type == "TreeHeadSigned" and d.record["tree_size"] == 300:
                rec = dict(d.record)
                rec["signatures"] = [s.model_dump() for s in make_sigs(checkpoint_body(log_id, 300, rec["root_hash"]).encode())]
                v = serde.encode("TreeHeadSigned", rec)
            out.append((part, k, v))
        return out

    return _run_copy(built_log, _edit_topic("audit", edit))


def test_a_head_signed_by_another_key_is_named(built_log):
    other = HybridKeyPair.generate(key_id=built_log[1].key_id)  # same key id, different keys
    report = _replace_head(built_log, other.sign)
    first = report.first
    assert first is not None and first.kind == "head_signature" and first.head_size == 300


def test_a_head_with_only_one_valid_algorithm_is_rejected(built_log, key_dir):
    own = HybridKeyPair.load(key_dir, "audit-log")
    other = HybridKeyPair.generate(key_id=own.public.key_id)

    def mixed(keep: str):
        def sigs(msg: bytes) -> list[Signature]:
            good = {s.algorithm: s for s in own.sign(msg)}
            bad = {s.algorithm: s for s in other.sign(msg)}
            return [good[a] if a == keep else bad[a] for a in ("Ed25519", "ML_DSA_65")]
        return sigs

    for keep, broken in (("Ed25519", "ML-DSA-65"), ("ML_DSA_65", "Ed25519")):
        report = _replace_head(built_log, mixed(keep))
        first = report.first
        assert first is not None and first.kind == "head_signature" and first.head_size == 300
        assert broken in first.detail
        # the same rule for a checkpoint note checked by hand
        head = sign_head(own, "test.local/x", 3, bytes(32))
        body, _, lines = head.note.partition("\n\n")
        bad_line = sign_head(other, "test.local/x", 3, bytes(32)).note.partition("\n\n")[2].splitlines()
        good_line = lines.splitlines()
        pick = 0 if keep == "ML_DSA_65" else 1  # replace the line of the algorithm that must fail
        good_line[pick] = _with_key_id(bad_line[pick], good_line[pick])
        with pytest.raises(VerificationError) as e:
            verify_checkpoint(body + "\n\n" + "\n".join(good_line) + "\n", own.public)
        assert e.value.reason == "bad_signature"


def _with_key_id(line_with_sig: str, line_with_key: str) -> str:
    """A signature line carrying the other line's signature under the right key id."""
    name, sig_b64 = line_with_sig[2:].rsplit(" ", 1)
    _, key_b64 = line_with_key[2:].rsplit(" ", 1)
    raw = base64.b64decode(key_b64)[:4] + base64.b64decode(sig_b64)[4:]
    return f"\u2014 {name} {base64.b64encode(raw).decode()}"
