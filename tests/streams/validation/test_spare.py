"""A warm spare of `qi worker validate` reads the facts before its promotion (decision 0077), and
once promoted judges by the facts as they are then, not as they were when it prefetched: a key
revoked and an issuer registered while it waited both count."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from qi.fleet.standby import PROMOTE
from qi.platform import Platform
from tests.conftest import make_settings
from tests.projections.harness import wait_until
from tests.streams.validation import world as w
from tests.streams.validation.stack import ROOT, Outputs, publish, worker_env

pytestmark = pytest.mark.stack
TWINS = 30


def _failed(v) -> list[str]:
    return [c["check"] for c in v["checks"] if c["outcome"] == "FAIL"]


def _wait_for_line(path, text: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    def seen() -> bool:
        assert proc.poll() is None, path.read_text(errors="replace")[-3000:]
        return text in (path.read_text(errors="replace") if path.exists() else "")

    wait_until(seen, timeout_s=timeout_s, every_s=0.1)


def test_a_promoted_spare_judges_by_the_facts_of_its_promotion(local_stack, stack_env, tmp_path) -> None:
    prefix = f"vs{os.getpid()}."
    platform = Platform(make_settings(local_stack, prefix))
    asyncio.run(platform.ensure_topics())
    asyncio.run(publish(platform, w.register("lab", "lab/1", ["calibration.pressure"]), w.twin("tw-1")))
    log = tmp_path / "spare.log"
    env = worker_env(stack_env, prefix, QI_RUNNER_STANDBY="true", QI_LOG_LEVEL="info",
                     QI_RUNNER_INSTANCE="validate-spare")
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "qi", "worker", "validate"], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_line(log, '"standby.waiting"', proc)  # prefetched: it knows lab/1, not what follows
        # facts that arrive while it waits: lab/1 revoked before the certificate below, a new issuer
        asyncio.run(publish(platform, w.revoke_key("lab", "lab/1", w.T0 - w.timedelta(days=1)),
                            w.register("lab-new", "lab-new/1", ["calibration.pressure"])))
        for i in range(TWINS):  # one publish each: many batches to read after the prefetch, none skipped
            asyncio.run(publish(platform, w.twin(f"tw-wait-{i}")))
        revoked = w.certificate(w.uid("C"), "lab", "lab/1", "tw-1")
        new = w.certificate(w.uid("C"), "lab-new", "lab-new/1", "tw-1")
        assert proc.stdin is not None
        proc.stdin.write(PROMOTE)
        proc.stdin.flush()

        async def verdicts():
            async with Outputs(platform) as outs:
                await publish(platform, revoked, new)
                await outs.until(lambda: all(outs.validated.get(str(c.event_id)) for c in (revoked, new)), 120)
                return outs.verdict(revoked), outs.verdict(new)

        v_revoked, v_new = asyncio.run(verdicts())
        assert v_revoked["verdict"] == "INVALID" and _failed(v_revoked) == ["issuer_key"], v_revoked["checks"]
        assert v_new["verdict"] == "VALID", v_new["checks"]
        text = log.read_text(errors="replace")
        assert text.index('"standby.waiting"') < text.index('"standby.promoted"') < text.index('"validation.facts_ready"')
        # ready means caught up with the log as it was at the promotion: both issuers, not the one
        # it prefetched (the certificates alone may not tell: the replica follows on after ready)
        [ready] = [json.loads(line) for line in text.splitlines() if '"validation.facts_ready"' in line]
        assert ready["issuers"] == 2 and ready["twins"] == 1 + TWINS, ready
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
