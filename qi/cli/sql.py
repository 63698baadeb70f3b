"""``qi sql``: analysts' queries on the warehouse, and ``qi worker warehouse``, its projector.

With the embedded chDB engine only one process may open the data directory;
the projector that holds it serves a loopback SQL endpoint and ``qi sql``
goes through it (docs/decisions/0061-qi-sql-through-the-owner.md).
"""

from __future__ import annotations

import sys

import click

from projections.clickhouse.errors import WarehouseError
from qi.cli._common import USER_ERRORS, fail
from qi.cli.worker import run_batch_worker, worker
from qi.platform import ConfigError, Platform


@click.command()
@click.argument("query", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--database", default=None, help="default database of the query (QI_CLICKHOUSE_DATABASE)")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="a query parameter, used in the query as {NAME:Type}")
@click.pass_obj
def sql(platform: Platform, query: str | None, fmt: str, database: str | None, params: tuple[str, ...]) -> None:
    """Run a read-only SQL query on the ClickHouse warehouse; '-' or nothing reads it from stdin.

    Works while a projector holds the embedded chDB directory: the query goes through it.
    """
    from projections.clickhouse.query import run_query

    if query is None or query == "-":
        query = sys.stdin.read()
    if not query.strip():
        fail("no query given")
    parameters = {}
    for p in params:
        name, sep, value = p.partition("=")
        if not sep or not name:
            fail(f"--param wants NAME=VALUE, got {p!r}")
        parameters[name] = value
    try:
        dsn = platform.endpoints().clickhouse
        if dsn is None:
            raise ConfigError("no ClickHouse configured: run `qi stack up` or set QI_CLICKHOUSE_DSN")
        result = run_query(dsn, database or platform.settings.clickhouse.database, query,
                           parameters, run_dir=platform.stack.run_dir)
    except WarehouseError as e:
        fail(str(e))
    except USER_ERRORS as e:
        fail(str(e))
    click.echo(result.render(fmt))  # type: ignore[arg-type]


async def run_warehouse(platform: Platform, database: str | None = None) -> None:
    """Run the ClickHouse projector until SIGTERM; on chDB also serve `qi sql` (for any CLI entry point,
    e.g. ``qi worker project --sink clickhouse``)."""
    from projections.clickhouse.projector import ClickHouseProjector, open_warehouse
    from projections.clickhouse.query_server import QueryServer
    from projections.clickhouse.warehouse import is_embedded

    wh = platform.warehouse(database)
    server = None
    if platform.settings.runner.standby:  # a spare loads the engine's code, but must not open chDB
        import clickhouse_connect  # noqa: F401  (one process per data directory)

        if is_embedded(wh.dsn):
            import chdb  # noqa: F401
    await platform.standby_gate()
    await open_warehouse(wh)  # own the engine before announcing the endpoint
    if is_embedded(wh.dsn):
        from projections.clickhouse.rebuild import RebuildControl

        server = QueryServer(wh.dsn, wh.database, announce=platform.warehouse_sql_announce(),
                             rebuild=RebuildControl(platform, wh.database),
                             readers=platform.settings.clickhouse.readers)
        await server.start()
    try:
        ch = platform.settings.clickhouse
        await run_batch_worker(platform, lambda serde: ClickHouseProjector(
            wh, batch_rows=ch.batch_rows, batch_max_delay_ms=ch.batch_max_delay_ms))
    finally:
        if server is not None:
            await server.close()


@worker.command("warehouse")
@click.option("--database", default=None, help="the warehouse database (default QI_CLICKHOUSE_DATABASE)")
@click.pass_obj
def warehouse_worker(platform: Platform, database: str | None) -> None:
    """Project every topic into the ClickHouse warehouse; serve `qi sql` when embedded."""
    import asyncio

    try:
        asyncio.run(run_warehouse(platform, database))
    except USER_ERRORS as e:
        fail(str(e))
