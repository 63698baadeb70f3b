"""``qi api`` (serve the HTTP API) and ``qi tokens issue`` (a bearer token for a user)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys

import click
import structlog

from qi.api.auth import Role, TokenKeyError
from qi.api.processes import ApiProcesses, listening_socket, reuse_port_sockets
from qi.cli._common import USER_ERRORS, fail
from qi.platform import Platform

log = structlog.get_logger(__name__)


def _announce_path(platform: Platform, instance: str):
    return platform.stack.run_dir / "health" / f"{instance}.json"


@click.command("api")
@click.option("--host", default=None, help="[default: QI_API_HOST, 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="[default: QI_API_PORT; 0: any free port]")
@click.option("--workers", type=click.IntRange(1, 32), default=None, help="uvicorn processes [default: QI_API_WORKERS, 1]")
@click.pass_obj
def api(platform: Platform, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API (docs/api.md) until SIGTERM; its URL is announced in <run dir>/health/api.json."""
    import uvicorn

    s = platform.settings.api
    host = host or s.host
    port = s.port if port is None else port
    workers = workers or s.workers
    os.environ["QI_API_WORKERS"] = str(workers)  # each worker process divides the verify rate by this
    platform.settings.api.workers = workers
    try:
        app = platform.api_app() if workers == 1 else None
    except (*USER_ERRORS, TokenKeyError) as e:
        fail(str(e))
    # a warm spare (decision 0074) waits here, its imports and app made, before it takes the port
    # or announces a URL: without the gate it served as a second API and took over the announce file
    asyncio.run(platform.standby_gate())
    try:
        # one process: one socket; several: one SO_REUSEPORT socket each, so the kernel spreads the
        # connections evenly over them (decision 0128)
        socks = ([listening_socket(host, port, reuse_port=False)] if workers == 1
                 else reuse_port_sockets(host, port, workers))
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    sock = socks[0]
    bound = sock.getsockname()[1]
    url = f"http://{host}:{bound}"
    instance = platform.settings.runner.instance or "api"
    structlog.contextvars.bind_contextvars(worker="api", instance=instance)
    announce = _announce_path(platform, instance)

    def announce_url() -> None:
        announce.parent.mkdir(parents=True, exist_ok=True)
        tmp = announce.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
        tmp.replace(announce)
        log.info("api.listening", url=url, workers=workers)

    def unannounce() -> None:
        try:
            if json.loads(announce.read_text()).get("pid") == os.getpid():
                announce.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass

    # uvicorn re-raises SIGTERM/SIGINT once it has shut down; let that end the process through
    # `finally` (so the announce file goes) instead of the default handler's immediate exit
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        if workers == 1:
            class Server(uvicorn.Server):
                async def startup(self, sockets=None) -> None:
                    await super().startup(sockets=sockets)
                    if not self.should_exit:
                        announce_url()  # only once the app has started: probes never wait on a backlog

            config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=10)
            Server(config).run(sockets=[sock])
        else:
            announce_url()
            ApiProcesses(socks, "qi.api.main:app_from_env", grace_s=10).run()
    finally:
        unannounce()


def parse_ttl(text: str) -> int:
    m = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not m:
        raise click.BadParameter("a number of seconds, or with s/m/h/d (e.g. 90d)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@click.group()
def tokens() -> None:
    """Bearer tokens of the HTTP API (docs/api.md)."""


@tokens.command("issue")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--subject", required=True, help="who the token is for (logged with denied requests)")
@click.option("--ttl", default=None, help="lifetime, e.g. 3600, 12h, 90d [default: QI_API_TOKEN_TTL_S, 30d]")
@click.pass_obj
def issue(platform: Platform, role: str, subject: str, ttl: str | None) -> None:
    """Print a signed token for SUBJECT with ROLE (the key is made once under the run dir's keys/)."""
    seconds = parse_ttl(ttl) if ttl else platform.settings.api.token_ttl_s
    if seconds < 60:
        raise click.BadParameter("at least 60 seconds", param_hint="--ttl")
    try:
        t = platform.api_tokens(create=True)
    except TokenKeyError as e:
        fail(str(e))
    click.echo(t.issue(Role(role), subject, seconds))
