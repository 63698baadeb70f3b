"""Two `qi worker validate` processes share the partitions and give the same results as one."""

from __future__ import annotations

import asyncio
import os

import pytest

from qi.platform import Platform
from tests.conftest import make_settings
from tests.streams.validation import world as w
from tests.streams.validation.stack import Outputs, WorkerProcess, publish, worker_env

pytestmark = pytest.mark.stack


def test_two_workers_share_partitions_and_see_every_issuer_and_twin(local_stack, stack_env, tmp_path) -> None:
    prefix = f"so{os.getpid()}."
    platform = Platform(make_settings(local_stack, prefix))
    asyncio.run(platform.ensure_topics())
    workers = [WorkerProcess(worker_env(stack_env, prefix), tmp_path / f"w{i}.log") for i in range(2)]
    for wp in workers:
        wp.start()
    # Issuers and twins spread over several partitions: each worker must see all of them (GlobalTables).
    issuers = [f"lab-{i}" for i in range(6)]
    twins = [f"tw-{i}" for i in range(6)]
    certs = [w.certificate(w.uid("S"), issuers[i % 6], f"{issuers[i % 6]}/1", twins[(i * 5) % 6])
             for i in range(120)]
    bad = [w.certificate(w.uid("X"), issuers[i % 6], f"{issuers[i % 6]}/1", twins[i % 6], kind="calibration.mass")
           for i in range(12)]

    async def go():
        await asyncio.sleep(4)  # both in the group before the data arrives
        await publish(platform, *[w.register(i, f"{i}/1", ["calibration.pressure"]) for i in issuers],
                      *[w.twin(t) for t in twins])
        async with Outputs(platform) as out:
            await publish(platform, *certs, *bad)
            await out.until(lambda: all(out.validated.get(str(c.event_id)) for c in certs + bad), 90)
            return out
    try:
        out = asyncio.run(go())
        assert all(wp.alive() for wp in workers), [wp.log()[-2000:] for wp in workers]
    finally:
        for wp in workers:
            wp.stop()
    assert {out.verdict(c)["verdict"] for c in certs} == {"VALID"}
    assert {tuple(x["check"] for x in out.verdict(c)["checks"] if x["outcome"] == "FAIL") for c in bad} == \
        {("accreditation",)}
    by_source = {v["source"] for vs in out.validated.values() for v in vs}
    assert by_source == {"validate"}
