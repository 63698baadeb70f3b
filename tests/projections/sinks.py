"""Build each sink kind for a projection and a target (the one list the contract tests, the crash
harness and the rebuild test iterate over). A new sink kind adds one entry here."""

from __future__ import annotations

from projections.framework import Projection, Sink
from qi.platform import Platform

SINK_KINDS = ("postgres", "redis", "clickhouse")


def make_sink(platform: Platform, kind: str, projection: Projection, target: str | None) -> Sink:
    return platform.projection_sink(projection, kind, target)


async def promote(platform: Platform, sink: Sink) -> Sink | None:
    """``sink.promote()``: every sink returns a sink on the previous live target, or None."""
    return await sink.promote()
