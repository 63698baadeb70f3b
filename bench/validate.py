"""Certificate validation throughput: `qi worker validate` end to end vs the bare signature checks.

* floor ``bare verify``: Ed25519 + ML-DSA-65 verification of the same
  certificates' payloads in one process, nothing else (the work validation
  cannot avoid);
* ``validated``: certificates/s through one `qi worker validate` process
  (faust) on the local broker: the worker is started and warmed up with one
  certificate, then N signed certificates are published and the clock runs
  until all N CertificateValidated verdicts are read back.

``ratio`` = validated/s over bare verify/s (goal >= 0.7). Also reported: the worker process's
CPU time (user + system, from /proc) per certificate over the timed phase. Uses the stack of
QI_KAFKA_BOOTSTRAP, else starts the local stack in .qi/bench.

    python -m bench.validate [--certificates 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa  # noqa: E402

from bench._report import RESULTS, report  # noqa: E402
from events.canonical import certificate_payload  # noqa: E402
from qi.config import Settings  # noqa: E402
from qi.platform import Platform  # noqa: E402
from qi.stack import LocalStack  # noqa: E402
from tests.streams.validation import world as w  # noqa: E402


def bare_verify_rate(certs, public) -> float:
    ed = ed25519.Ed25519PublicKey.from_public_bytes(public.ed25519)
    pq = mldsa.MLDSA65PublicKey.from_public_bytes(public.ml_dsa_65)
    work = [(certificate_payload(c), c.signatures[0].value, c.signatures[1].value) for c in certs]
    t = time.perf_counter()
    for payload, s_ed, s_pq in work:
        ed.verify(s_ed, payload)
        pq.verify(s_pq, payload)
    return len(work) / (time.perf_counter() - t)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def validated_rate(platform: Platform, env: dict[str, str], certs, log_path: Path) -> tuple[float, float]:
    """(certificates/s, worker CPU ms per certificate) over the timed phase."""
    from tests.streams.validation.stack import Outputs, WorkerProcess, publish

    await platform.ensure_topics()
    await publish(platform, w.register("lab", "lab/1", ["calibration.pressure"]), w.twin("tw-1"))
    worker = WorkerProcess(env, log_path)
    worker.start()
    try:
        async with Outputs(platform) as out:
            warm = w.certificate(w.uid("warm"), "lab", "lab/1", "tw-1")
            await publish(platform, warm)
            await out.until(lambda: out.validated.get(str(warm.event_id)), 120)
            t, cpu = time.perf_counter(), process_cpu_s(worker.proc.pid)
            await publish(platform, *certs)
            wanted = [str(c.event_id) for c in certs]
            await out.until(lambda: all(out.validated.get(e) for e in wanted), 600)
            elapsed = time.perf_counter() - t
            cpu = process_cpu_s(worker.proc.pid) - cpu
            assert all(out.validated[e][0]["verdict"] == "VALID" for e in wanted)
        return len(certs) / elapsed, cpu * 1000 / len(certs)
    finally:
        worker.stop()


async def main(args) -> None:
    bootstrap = os.environ.get("QI_KAFKA_BOOTSTRAP")
    stack = None
    if not bootstrap:
        stack = LocalStack(ROOT / ".qi" / "bench")
        bootstrap = stack.up()["kafka"]
    try:
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
        env.update({"QI_KAFKA_BOOTSTRAP": bootstrap, "QI_KAFKA_TOPIC_PREFIX": prefix, "QI_LOG_LEVEL": "warning",
                    "QI_VALIDATION_SESSION_TIMEOUT_S": "3", "QI_STACK_RUN_DIR": str(ROOT / ".qi" / "bench")})
        settings = Settings.from_env().model_copy(update={
            "kafka": Settings.from_env().kafka.model_copy(update={"bootstrap": bootstrap, "topic_prefix": prefix})})
        platform = Platform(settings)
        certs = [w.certificate(f"BENCH-{i:06d}", "lab", "lab/1", "tw-1") for i in range(args.certificates)]
        floor = max(bare_verify_rate(certs, w.key("lab/1").public) for _ in range(3))
        with tempfile.TemporaryDirectory() as tmp:
            log_path = Path(args.worker_log) if args.worker_log else Path(tmp) / "worker.log"
            ours, cpu_ms = await validated_rate(platform, env, certs, log_path)
        ratio = ours / floor
        rows = [{"path": "bare verify (Ed25519 + ML-DSA-65)", "certificates/s": floor, "ratio": 1.0,
                 "CPU ms/certificate": 1000 / floor},
                {"path": "qi worker validate, end to end", "certificates/s": ours, "ratio": ratio,
                 "CPU ms/certificate": cpu_ms}]
        path = report("validate", rows, params=vars(args))
        doc = json.loads(path.read_text())
        doc.update({"certificates_per_s": ours, "bare_verify_per_s": floor, "ratio": ratio,
                    "worker_cpu_ms_per_certificate": cpu_ms})
        (RESULTS / "validate.json").write_text(json.dumps(doc, indent=2))
    finally:
        if stack is not None:
            stack.down()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--certificates", type=int, default=3000)
    ap.add_argument("--worker-log", help="keep the worker's log here (default: a temporary file)")
    asyncio.run(main(ap.parse_args()))
