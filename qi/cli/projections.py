"""``qi worker project`` (run projectors) and ``qi projections status|rebuild``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from projections.clickhouse.errors import WarehouseError
from qi.cli._common import USER_ERRORS, fail, run, table
from qi.cli.worker import run_batch_worker, worker
from qi.platform import Platform

#: sink -> the projection it serves
SINK_PROJECTION = {"postgres": "registry", "redis": "lookups"}
SINKS = ("postgres", "redis", "clickhouse")


@worker.command("project")
@click.option("--sink", "sink", type=click.Choice([*SINKS, "all"]), required=True,
              help="postgres: the registry; redis: hot lookups; clickhouse: the warehouse; all: one process each")
@click.pass_obj
def project(platform: Platform, sink: str) -> None:
    """Project the log into a read model until SIGTERM (resumes from the sink's checkpoint)."""
    if sink == "all":
        _run_all()
        return
    if sink == "clickhouse":  # the warehouse (and, on embedded chDB, its `qi sql` endpoint)
        from qi.cli.sql import run_warehouse

        try:
            run(run_warehouse(platform))
        except USER_ERRORS as e:
            fail(str(e))
        return
    else:
        from projections.framework import ProjectionProcessor
        from projections.registry import PROJECTIONS

        projection = PROJECTIONS[SINK_PROJECTION[sink]]
        build = lambda serde: ProjectionProcessor(projection, platform.projection_sink(projection, sink))  # noqa: E731
    try:
        run(run_batch_worker(platform, build))
    except USER_ERRORS as e:
        fail(str(e))


def _run_all() -> None:
    """One child process per sink (the embedded chDB engine wants its own process); SIGTERM is passed on."""
    sinks = SINKS
    procs = [subprocess.Popen([sys.executable, "-m", "qi", "worker", "project", "--sink", s], env=os.environ)
             for s in sinks]

    def forward(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [p.wait() for p in procs]
    sys.exit(max(codes, key=abs))


@click.group()
def projections() -> None:
    """Read models: position and lag, rebuild from the log."""


@projections.command()
@click.pass_obj
def status(platform: Platform) -> None:
    """Each projection's stored position and lag per partition."""
    from projections.rebuild import end_offsets
    from projections.registry import PROJECTIONS

    async def go() -> list[list[str]]:
        rows = []
        for sink, name in SINK_PROJECTION.items():
            projection = PROJECTIONS[name]
            s = platform.projection_sink(projection, sink)
            try:
                stored = await s.positions()
            except Exception as e:  # noqa: BLE001 - a down store is a status, not a crash
                rows.append([name, sink, "-", "-", "-", "-", f"unavailable: {e}"])
                continue
            finally:
                await s.close()
            for (topic, part), end in sorted((await end_offsets(platform, projection.families)).items()):
                at = stored.get((topic, part), 0)
                rows.append([name, sink, topic, str(part), str(at), str(end), str(end - at)])
        return rows

    try:
        rows = run(go())
    except USER_ERRORS as e:
        fail(str(e))
    click.echo(table(rows, ["projection", "sink", "topic", "partition", "position", "end", "lag"]))


@projections.command()
@click.argument("name", type=click.Choice([*SINK_PROJECTION.values(), "warehouse"]))
@click.pass_obj
def rebuild(platform: Platform, name: str) -> None:
    """Replay the log into a fresh target, swap it in when caught up, drop the old one.

    warehouse: the ClickHouse warehouse; on embedded chDB with `qi worker warehouse` running, the
    rebuild runs inside that worker (it owns the engine) and this command follows its progress.
    """
    from projections.rebuild import Progress, rebuild as do_rebuild
    from projections.registry import PROJECTIONS

    def bar(p: Progress) -> None:
        width = 30
        filled = int(width * p.done / p.total) if p.total else width
        eta = "-" if p.eta_s is None else f"{p.eta_s:,.0f}s"
        click.echo(f"\r{p.phase:<9} [{'#' * filled}{'.' * (width - filled)}] {p.done:,}/{p.total:,} events "
                   f"{p.rate:,.0f}/s ETA {eta}   ", nl=False, err=True)

    try:
        if name == "warehouse":
            result = run(_rebuild_warehouse(platform, bar))
        else:
            sink = next(s for s, p in SINK_PROJECTION.items() if p == name)
            result = run(do_rebuild(platform, PROJECTIONS[name], sink, on_progress=bar))
    except USER_ERRORS as e:
        fail(str(e))
    except WarehouseError as e:
        fail(str(e))
    click.echo("", err=True)
    click.echo(f"rebuilt {result['projection']} ({result['sink']}): {result['events']:,} events in "
               f"{result['seconds']}s; live target swapped, old {result['dropped'] or '-'} dropped")


async def _rebuild_warehouse(platform: Platform, on_progress) -> dict:
    """Through the owner's endpoint when a worker holds the embedded engine, else right here."""
    from projections.clickhouse.query import find_endpoint
    from projections.clickhouse.rebuild import rebuild_via, rebuild_warehouse
    from qi.platform import ConfigError

    dsn = platform.endpoints().clickhouse
    if dsn is None:
        raise ConfigError("no ClickHouse configured: run `qi stack up` or set QI_CLICKHOUSE_DSN")
    url = find_endpoint(platform.stack.run_dir, dsn)
    if url is not None:
        return await rebuild_via(url, on_progress=on_progress)
    return await rebuild_warehouse(platform, on_progress=on_progress)
