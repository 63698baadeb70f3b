"""The `qi` command as users run it: a subprocess against the session stack."""

import asyncio
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.stack

GOOD = [
    {"event_type": "TwinRegistered", "occurred_at": "2026-11-01T10:00:00Z", "aggregate_version": 1,
     "twin_id": "tw-cli", "kind": "gauge", "name": "G1"},
    {"event_type": "SensorReading", "occurred_at": "2026-11-01T10:00:00Z", "twin_id": "tw-cli",
     "sensor_id": "s1", "quantity": "pressure", "value": 1.5, "unit": "kPa"},
    {"event_type": "SensorReading", "occurred_at": "2026-11-01T10:00:05Z", "twin_id": "tw-cli",
     "sensor_id": "s1", "quantity": "pressure", "value": 1.6, "unit": "kPa"},
]


def qi(env, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "qi", *args], env=env, capture_output=True, text=True,
                          input=stdin, timeout=120)


@pytest.fixture
def env(stack_env, topic_prefix):
    return {**stack_env, "QI_KAFKA_TOPIC_PREFIX": topic_prefix}


def test_publish_sends_exactly_the_good_lines_and_names_each_bad_one(env, platform, tmp_path):
    lines = [
        json.dumps(GOOD[0]),
        json.dumps({**GOOD[1], "value": "high"}),
        json.dumps(GOOD[1]),
        "{broken",
        json.dumps({"event_type": "Unheard"}),
        json.dumps(GOOD[2]),
    ]
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(lines) + "\n")
    assert qi(env, "topics", "create").returncode == 0

    proc = qi(env, "publish", "--file", str(f))
    assert proc.returncode == 1, proc.stderr
    assert "events.jsonl:2: field value:" in proc.stderr
    assert "events.jsonl:4: not valid JSON" in proc.stderr
    assert "events.jsonl:5: field event_type: unknown event type 'Unheard'" in proc.stderr
    assert "published 3 of 6 event(s) from events.jsonl (lines 1, 3, 6)" in proc.stdout
    assert "3 line(s) failed and were not published: 2, 4-5" in proc.stdout

    async def read_back():
        serde = await platform.serde()
        async with platform.reader(serde, ["twins", "readings"]) as reader:
            return await reader.read_to_end()

    records = asyncio.run(read_back())
    got = sorted((r.decoded.event_type, r.decoded.record.get("value")) for r in records)
    assert got == [("SensorReading", 1.5), ("SensorReading", 1.6), ("TwinRegistered", None)]


def test_dry_run_sends_nothing(env, platform, tmp_path):
    f = tmp_path / "ok.jsonl"
    f.write_text("\n".join(json.dumps(g) for g in GOOD))
    assert qi(env, "topics", "create").returncode == 0
    proc = qi(env, "publish", "--file", str(f), "--dry-run")
    assert proc.returncode == 0 and "dry run: 3 valid line(s) (lines 1-3)" not in proc.stderr
    assert "3 valid line(s) (1-3), 0 invalid" in proc.stdout

    async def count():
        serde = await platform.serde()
        async with platform.reader(serde, ["twins", "readings"]) as reader:
            return len(await reader.read_to_end())

    assert asyncio.run(count()) == 0


def test_publish_from_stdin_then_tail_prints_json(env):
    assert qi(env, "topics", "create").returncode == 0
    pub = qi(env, "publish", "--file", "-", stdin="\n".join(json.dumps(g) for g in GOOD))
    assert pub.returncode == 0, pub.stderr
    tail = qi(env, "tail", "readings")
    assert tail.returncode == 0, tail.stderr
    out = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [o["event"]["value"] for o in out] == [1.5, 1.6]
    assert {o["key"] for o in out} == {"tw-cli/s1"}
    assert out[0]["event"]["occurred_at"] == "2026-11-01T10:00:00+00:00"
    limited = qi(env, "tail", "twins", "--limit", "1")
    assert len(limited.stdout.splitlines()) == 1


def test_missing_file_and_unknown_topic_are_clear_errors(env, tmp_path):
    proc = qi(env, "publish", "--file", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and "nope.jsonl" in proc.stderr
    proc = qi(env, "tail", "no.such.topic")
    assert proc.returncode == 2 and "no such topic: no.such.topic" in proc.stderr


def test_no_kafka_configured_says_what_to_do(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "QI_STACK_RUN_DIR": str(tmp_path / "empty")}
    proc = qi(env, "tail", "twins")
    assert proc.returncode == 2
    assert "run `qi stack up` or set QI_KAFKA_BOOTSTRAP" in proc.stderr
