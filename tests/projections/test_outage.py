"""Outage test: the store a projector writes to (a dedicated Postgres, and separately a dedicated
Redis, so the session's stack is untouched) stops for 10 s mid-stream. The projector logs the
outage, retries the same batch with backoff without fetching more (memory stays flat), resumes
when the store is back, and loses nothing."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from qi.stack import process
from qi.stack.services import Postgres, Redis
from tests.projections.harness import (
    PROJECTION_OF, diff, projector_env, sink_positions, sink_snapshot, start_projector, stop, wait_until,
)
from tests.projections.world import expected, world

pytestmark = pytest.mark.stack

OUTAGE_S = 10.0


class Dedicated:
    """One Postgres or Redis process of our own, stoppable and restartable on the same port."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.svc = Postgres() if kind == "postgres" else Redis()
        self.kind, self.data_dir = kind, data_dir
        self.port = process.free_port()
        self.url = self.svc.url(self.port)
        self.rec: process.ProcessRecord | None = None

    def start(self) -> None:
        launch = self.svc.prepare(self.data_dir, self.port, {})
        argv = launch.argv
        if self.kind == "redis":  # survive the restart: append-only file, fsync'd per write
            i = argv.index("--appendonly")
            argv = [*argv[:i], "--appendonly", "yes", "--appendfsync", "always", *argv[i + 2:]]
        self.rec = process.spawn(argv, log=self.data_dir.parent / f"{self.kind}.log", cwd=self.data_dir.parent,
                                 user=launch.user)
        assert process.wait_for_port(self.port, 60, self.rec)
        wait_until(lambda: _healthy(self.svc, self.url), timeout_s=60, every_s=0.1)

    def stop(self) -> None:
        p = process.process_of(self.rec)
        if p is not None:  # Postgres: SIGINT is the fast shutdown (SIGTERM waits for clients to leave)
            p.send_signal(signal.SIGINT if self.kind == "postgres" else signal.SIGTERM)
            p.wait(30)


def _healthy(svc, url) -> bool:
    try:
        svc.check(url)
        return True
    except Exception:  # noqa: BLE001 - "not yet"
        return False


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_store_outage_is_retried_with_flat_memory_and_nothing_lost(kind, platform, stack_env, topic_prefix,
                                                                    tmp_path):
    store = Dedicated(kind, tmp_path / kind / "data")
    store.start()
    try:
        projection = PROJECTION_OF[kind]
        events = world(24_000, seed=41, twins=80, firehose=0.3)
        before, during = events[:16_000], events[16_000:]
        n_mine = sum(e.TOPIC_FAMILY in projection.families for e in events)
        url_var = "QI_POSTGRES_DSN" if kind == "postgres" else "QI_REDIS_URL"
        if kind == "postgres":
            platform.settings.postgres.dsn = store.url  # type: ignore[assignment]
        else:
            platform.settings.redis.url = store.url  # type: ignore[assignment]

        async def publish(evs):
            await platform.ensure_topics()
            serde = await platform.serde()
            async with platform.publisher(serde) as pub:
                await pub.publish_many(evs)

        asyncio.run(publish(before))
        env = projector_env(stack_env, prefix=topic_prefix, run_dir=tmp_path / "run",
                            QI_RUNNER_MAX_BATCH="1000", QI_RUNNER_RETRY_MAX_S="1.0", **{url_var: store.url})
        log = tmp_path / "projector.log"
        log.touch()
        sink = lambda: platform.projection_sink(projection, kind)  # noqa: E731
        applied = lambda: sum(sink_positions(sink).values())  # noqa: E731
        proc = start_projector(env, kind, log)
        try:
            wait_until(lambda: applied() > 0, timeout_s=60, every_s=0.05)
            mark = log.stat().st_size
            store.stop()
            rss: list[int] = []
            ps = psutil.Process(proc.pid)
            publisher = threading.Thread(target=lambda: asyncio.run(publish(during)))
            publisher.start()  # the stream goes on during the outage
            t0 = time.monotonic()
            while time.monotonic() - t0 < OUTAGE_S:
                rss.append(ps.memory_info().rss)
                time.sleep(0.25)
            publisher.join()
            store.start()
            wait_until(lambda: applied() == n_mine, timeout_s=120, every_s=0.5)
            snap = sink_snapshot(sink)
        finally:
            assert stop(proc) == 0
        text = log.read_bytes()[mark:].decode(errors="replace")
        assert '"projection.retrying"' in text and kind in text.split('"projection.retrying"', 1)[1][:400]
        assert '"projection.recovered"' in text
        retries = text.count('"projection.retrying"')
        assert 3 <= retries <= 40, retries  # backoff: not a busy loop, not a single try
        growth = max(rss) - rss[0]
        assert growth < 40 * 2**20, f"projector memory grew {growth / 2**20:.1f} MiB during the outage"
        assert diff(snap, expected(events, {t.name for t in projection.tables})) == []
    finally:
        store.stop()
