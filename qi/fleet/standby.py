"""A warm spare of a worker instance: prepared, then waiting to be promoted.

Restarting a worker costs mostly its start (interpreter, imports such as
scikit-learn or faust, topic checks, schema fetches), which on a loaded
2-core machine takes 5-40 s. So the supervisor keeps one spare process per
instance (docs/decisions/0074): it runs the same command with
``QI_RUNNER_STANDBY=true`` and stdin a pipe, prepares everything that does not
take a share of the work (imports, settings, topics, serde, the processor
object), and then blocks here, before it joins a consumer group, opens a
single-writer store (chDB) or serves /health. The supervisor promotes it by
writing a line to its stdin when the instance it stands in for has exited.
A spare whose stdin closes (the supervisor is gone or stopping) exits.

A pipe rather than a signal: a line written before the spare reaches the gate
waits in the pipe, so a promotion can never be lost or kill a half-started spare.
"""

from __future__ import annotations

import asyncio
import os
import sys

import structlog

log = structlog.get_logger(__name__)

PROMOTE = b"promote\n"


async def await_promotion() -> None:
    """Block until the supervisor promotes this spare; exit quietly when it never will."""
    log.info("standby.waiting", pid=os.getpid())
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.readline)
    if line != PROMOTE:
        log.info("standby.released", pid=os.getpid())
        raise SystemExit(0)  # nothing started yet: no group joined, no store opened
    log.info("standby.promoted", pid=os.getpid())
