"""Public verification is rate-limited per client: 429 with Retry-After, logged; a second `qi api`
with a small bucket on the same world."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api.world import VALID, Proc, announced_url, wait_until

pytestmark = pytest.mark.stack


def test_verify_over_the_limit_gets_429_with_retry_after(api_world) -> None:
    env = {**api_world.env, "QI_API_VERIFY_BURST": "3", "QI_API_VERIFY_RATE_PER_S": "0.5",
           "QI_RUNNER_INSTANCE": "api-limited"}
    proc = Proc(["api"], env, api_world.run_dir / "api-limited.log").start()
    try:
        url = wait_until("the second API", lambda: announced_url(api_world.run_dir, "api-limited"), 90,
                         {"api-limited": proc})
        with httpx.Client(base_url=url, timeout=30) as c:
            first = [c.get(f"/verify/{VALID}").status_code for _ in range(3)]
            over = c.get(f"/verify/{VALID}")
            assert first == [200, 200, 200]
            assert over.status_code == 429 and over.json()["code"] == "too_many_requests"
            assert 1 <= int(over.headers["retry-after"]) <= 2
            assert c.get("/audit/public-key").status_code == 200  # only /verify is limited
            time.sleep(int(over.headers["retry-after"]))
            assert c.get(f"/verify/{VALID}").status_code == 200  # a token refilled
        text = proc.log.read_text()
        assert '"reason": "rate"' in text and '"status": 429' in text
    finally:
        proc.stop()
    assert announced_url(api_world.run_dir, "api-limited") is None, "the announce file goes with the process"
