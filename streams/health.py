"""Health and metrics over HTTP for one worker process.

``/live``   200 while the event loop answers (the process is not wedged);
``/ready``  200 when the worker is in its group, not retrying, and caught up within
            ``QI_RUNNER_READY_MAX_LAG``; 503 otherwise, with the reason as JSON;
``/health`` the same detail, always 200 while live;
``/metrics`` Prometheus text of the worker's registries.

Served by aiohttp on the worker's own event loop. With port 0 the OS picks a
free port; the worker announces the URL in ``<run dir>/health/<instance>.json``
so ``qi ps`` can find it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HealthFn = Callable[[], dict[str, object]]


class HealthServer:
    def __init__(self, health: HealthFn, registries: Sequence[CollectorRegistry], *, host: str = "127.0.0.1",
                 port: int = 0, announce: Path | None = None) -> None:
        self._health = health
        self._registries = list(registries)
        self._host, self._port = host, port
        self._announce = announce
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/live", self._live)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/health", self._detail)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self._host}:{port}"
        if self._announce is not None:
            self._announce.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._announce.with_suffix(".tmp")
            tmp.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
            tmp.replace(self._announce)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._announce is not None:
            self._announce.unlink(missing_ok=True)

    async def _live(self, _: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _ready(self, _: web.Request) -> web.Response:
        h = self._health()
        return web.json_response(h, status=200 if h.get("ready") else 503)

    async def _detail(self, _: web.Request) -> web.Response:
        return web.json_response({"live": True, **self._health()})

    async def _metrics(self, _: web.Request) -> web.Response:
        body = b"".join(generate_latest(r) for r in self._registries)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def announced_url(run_dir: Path, instance: str) -> str | None:
    """The health URL a worker instance announced, if its process is still the one that wrote it."""
    try:
        data = json.loads((run_dir / "health" / f"{instance}.json").read_text())
    except (OSError, ValueError):
        return None
    return data.get("url")
