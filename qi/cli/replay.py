"""``qi replay registry --as-of T | --valid-at T``: the registry as it stood at a point in time."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from qi.cli._common import USER_ERRORS, fail, run
from qi.platform import ConfigError, Platform


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _dsn(platform: Platform) -> str:
    dsn = platform.endpoints().postgres
    if dsn is None:
        raise ConfigError("no Postgres configured: run `qi stack up` or set QI_POSTGRES_DSN")
    return dsn


@click.group()
def replay() -> None:
    """Rebuild read models from the log, at a point in time."""


@replay.command()
@click.option("--as-of", "as_of", help="only events RECORDED by this time (ISO 8601): what we knew then")
@click.option("--valid-at", "valid_at", help="only events that OCCURRED by this time: what was true then")
@click.option("--show", "show_ids", multiple=True, help="print this twin or certificate from the result")
@click.option("--drop", "drop_after", is_flag=True, help="drop the schema after printing")
@click.pass_obj
def registry(platform: Platform, as_of: str | None, valid_at: str | None, show_ids: tuple[str, ...],
             drop_after: bool) -> None:
    """Rebuild the registry into a fresh Postgres schema (replay_*) and print a summary.

    Reads the twins, issuers and certificates topics from the beginning and filters by the events'
    own times (the embedded broker cannot look offsets up by time).
    """
    from tqdm import tqdm

    from projections.pointintime.registry import drop, show
    from projections.pointintime.replay import FAMILIES, replay_registry

    if (as_of is None) == (valid_at is None):
        fail("give exactly one of --as-of and --valid-at")
    mode, at = ("as_of", _when(as_of)) if as_of else ("valid_at", _when(valid_at))
    bar = tqdm(unit="ev", desc=f"replay {mode} {at.isoformat()}", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    async def go():
        serde = await platform.serde()
        dsn = _dsn(platform)
        res = await replay_registry(bootstrap=platform.endpoints().kafka, dsn=dsn, serde=serde,
                                    topics=[platform.topics.topic(f) for f in FAMILIES], mode=mode, at=at,
                                    progress=progress)
        shown = [await show(dsn, res.schema, i) for i in show_ids]
        if drop_after:
            await drop(dsn, res.schema)
        return res, shown

    try:
        res, shown = run(go())
    except USER_ERRORS as e:
        fail(str(e))
    finally:
        bar.close()
    click.echo(f"schema {res.schema}: {res.applied} of {res.read} events applied; "
               f"{res.twins} twins, {res.certificates} certificates" + (" (dropped)" if drop_after else ""))
    for i, row in zip(show_ids, shown):
        click.echo(json.dumps(row, default=str) if row else f"{i}: not in the registry at that time")


@replay.command("show")
@click.argument("schema")
@click.argument("object_id")
@click.pass_obj
def show_cmd(platform: Platform, schema: str, object_id: str) -> None:
    """Print a twin or certificate from a replayed schema."""
    from projections.pointintime.registry import show

    row = run(show(_dsn(platform), schema, object_id))
    if row is None:
        fail(f"{object_id} is not in {schema}", code=1)
    click.echo(json.dumps(row, default=str))


@replay.command("list")
@click.pass_obj
def list_cmd(platform: Platform) -> None:
    """The replayed schemas."""
    from projections.pointintime.registry import list_schemas

    for name, mode, at, n in run(list_schemas(_dsn(platform))):
        click.echo(f"{name}  {mode} {at.isoformat()}  {n} events")


@replay.command("drop")
@click.argument("schema")
@click.pass_obj
def drop_cmd(platform: Platform, schema: str) -> None:
    """Drop a replayed schema."""
    from projections.pointintime.registry import drop

    try:
        run(drop(_dsn(platform), schema))
    except ValueError as e:
        fail(str(e))
    click.echo(f"dropped {schema}")
