"""``qi worker validate``: the certificate-validation worker (faust), until SIGTERM."""

from __future__ import annotations

import asyncio
import os

import click
import structlog

from qi.cli._common import USER_ERRORS, fail
from qi.platform import Platform


@click.command()
@click.pass_obj
def validate(platform: Platform) -> None:
    """Validate certificates: every check, pending rules, expiry alerts, dead letters.

    Several processes share the certificates topic's partitions; issuer keys
    and twins are replicated to each (faust GlobalTables).
    """
    import faust

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(platform.ensure_topics())
        loop.run_until_complete(platform.ensure_validation_topics())
        serde = loop.run_until_complete(platform.serde())
    except USER_ERRORS as e:
        fail(str(e))
    instance = platform.settings.runner.instance or f"validate-{os.getpid()}"
    structlog.contextvars.bind_contextvars(worker="validate", instance=instance)
    built = platform.validation_app(serde, instance=instance)
    app = built.app
    if platform.settings.runner.standby:
        loop.run_until_complete(_prefetch_facts(built.facts))
    loop.run_until_complete(platform.standby_gate())  # a warm spare waits here (decision 0074)
    loop.run_until_complete(_evict_predecessor(platform))
    worker = faust.Worker(app, loop=loop, loglevel=platform.settings.log.level.upper(), redirect_stdouts=False, override_logging=False,
                          quiet=True)
    worker.spinner = None  # its terminal spinner would write control characters into the JSON log
    try:
        worker.execute_from_commandline()
    finally:  # the announcement must not outlive the process (qi ps would ask a dead port)
        (platform.stack.run_dir / "health" / f"{instance}.json").unlink(missing_ok=True)


async def _prefetch_facts(facts) -> None:
    """A warm spare reads the issuers, twins and certificate index before it waits: promoted, it
    reads only what arrived meanwhile (decision 0077). A failure here costs only that head start."""
    try:
        await facts.prefetch()
    except Exception as e:  # noqa: BLE001 - the promoted worker's own start retries and reports it
        structlog.get_logger(__name__).warning("validation.prefetch_failed", error=str(e))
        await facts.close()


async def _evict_predecessor(platform: Platform) -> None:
    """The previous process of this supervised instance, if it died in the group, leaves it now
    (docs/decisions/0073): faust's consumer then joins without waiting out its session."""
    group = platform.validation_topology().app_id
    member_file = platform.member_file(group)
    if member_file is not None:
        await member_file.evict_predecessor(platform.endpoints().kafka, client_id=group)
