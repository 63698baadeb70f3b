"""``qi worker validate``: the certificate-validation worker (faust), until SIGTERM."""

from __future__ import annotations

import asyncio

import click

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
    app = platform.validation_app(serde)
    worker = faust.Worker(app, loop=loop, loglevel="WARNING", redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()
