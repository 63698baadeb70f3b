"""``qi worker ...``: long-running stream processors, one process each.

Each subcommand builds its processor through the platform and runs it until
SIGTERM or Ctrl-C, serving /health, /ready, /live and /metrics; several
processes of one worker share the partitions of its consumer group.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

import click
import structlog
from prometheus_client import CollectorRegistry

from events.serde import Serde
from qi.platform import Platform
from streams.processor import Processor


@click.group()
def worker() -> None:
    """Run a stream processor (validate, score, project, audit) until SIGTERM."""


class Service(Protocol):
    """A long-running worker: runs until ``stop`` is set, reports health, keeps Prometheus series."""

    def health(self) -> dict[str, object]: ...
    async def run(self, stop: asyncio.Event) -> None: ...


async def serve_until_signalled(platform: Platform, name: str, service: Service,
                                registries: list[CollectorRegistry]) -> None:
    """Run ``service`` with /health /ready /live /metrics until SIGTERM or SIGINT (then it finishes
    its batch and returns); logs carry the worker and instance names. A warm spare waits for its
    promotion first (``Platform.standby_gate``)."""
    await platform.standby_gate()
    instance = platform.settings.runner.instance or f"{name}-{os.getpid()}"
    structlog.contextvars.bind_contextvars(worker=name, instance=instance)
    health = platform.health_server(service.health, registries, instance=instance)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await health.start()
    try:
        await service.run(stop)
    finally:
        await health.close()


async def run_batch_worker(platform: Platform, build: Callable[[Serde], Awaitable[Processor] | Processor]) -> None:
    """Prepare topics and serde, build the processor, run it on a batch runner until signalled."""
    await platform.ensure_topics()
    serde = await platform.serde()
    processor = build(serde)
    if asyncio.iscoroutine(processor):
        processor = await processor
    runner = platform.batch_runner(processor, serde)  # type: ignore[arg-type]
    await serve_until_signalled(platform, runner.processor.name, runner,
                                [runner.metrics.registry, *runner.processor.registries()])


@worker.command()
@click.pass_obj
def score(platform: Platform) -> None:
    """Score every reading (AnomalyScored) and raise/clear alerts (AnomalyDetected)."""
    asyncio.run(run_batch_worker(platform, platform.score_processor))


@worker.command("audit")
@click.pass_obj
def audit_worker(platform: Platform) -> None:
    """Append every record of the audited families to the transparency log; sign tree heads."""
    from qi.cli._common import USER_ERRORS, fail
    from streams.audit.errors import AuditError

    try:
        asyncio.run(run_batch_worker(platform, platform.audit_processor))
    except (*USER_ERRORS, AuditError) as e:
        fail(str(e))
