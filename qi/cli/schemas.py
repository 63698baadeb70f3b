"""``qi schemas list|check|codegen``."""

from __future__ import annotations

import click

from events import codegen, compat
from events.errors import SchemaError
from qi.cli._common import fail, table
from qi.platform import Platform


@click.group()
def schemas() -> None:
    """The Avro event catalogue in schemas/."""


@schemas.command("list")
@click.pass_obj
def list_(platform: Platform) -> None:
    """Every event type with its versions, topic and key."""
    cat = platform.catalog
    rows = []
    for name in cat.names():
        sv = cat.latest(name)
        rows.append([name, str(sv.version), platform.topics.topic(sv.topic_family), "/".join(sv.key_fields)])
    click.echo(table(rows, ["event type", "latest", "topic", "key"]))


@schemas.command()
@click.pass_obj
def check(platform: Platform) -> None:
    """Fail if any version breaks BACKWARD compatibility or events/models.py is stale."""
    try:
        cat = platform.catalog
    except SchemaError as e:
        fail(str(e))
    errors = compat.check_catalog(cat)
    for e in errors:
        click.secho(str(e), fg="red", err=True)
    stale = codegen.models_path().read_text() != codegen.generate(cat)
    if stale:
        click.secho("events/models.py is stale: run `qi schemas codegen`", fg="red", err=True)
    if errors or stale:
        raise SystemExit(1)
    click.echo(f"{sum(1 for _ in cat)} schema versions of {len(cat.names())} event types: compatible, models up to date")


@schemas.command("codegen")
@click.pass_obj
def codegen_(platform: Platform) -> None:
    """Regenerate events/models.py from the schemas."""
    path = codegen.write(platform.catalog)
    click.echo(f"wrote {path}")
