"""``qi stack up|down|status`` and ``qi topics create``."""

from __future__ import annotations

import click

from qi.cli._common import USER_ERRORS, fail, run, table
from qi.platform import Platform


@click.group()
def stack() -> None:
    """The embedded local stack: Kafka-API broker, Postgres, Redis, MQTT, ClickHouse (chDB)."""


@stack.command()
@click.pass_obj
def up(platform: Platform) -> None:
    """Start what is not running (idempotent), create the topics, print the URLs."""
    try:
        urls = platform.stack.up()
        created = run(platform.ensure_topics())
    except USER_ERRORS as e:
        fail(f"{e}\nWhat did start is still running, for inspection: `qi stack status`; clean up with `qi stack down`.")
    click.echo(table([[k, v] for k, v in urls.items()], ["service", "url"]))
    new = [t.name for t in created if t.created]
    click.echo(f"\ntopics: {len(created)} ({len(new)} created)")
    click.echo(f"run directory: {platform.stack.run_dir}")


@stack.command()
@click.pass_obj
def status(platform: Platform) -> None:
    """Each service's process and health. Exits 1 if any is not healthy."""
    rows = platform.stack.status()
    click.echo(table(
        [[s.name, str(s.pid or "-"), s.url or "-", "ok" if s.healthy else "DOWN", s.detail] for s in rows],
        ["service", "pid", "url", "health", "detail"],
    ))
    if not rows or not all(s.healthy for s in rows):
        raise SystemExit(1)


@stack.command()
@click.option("--purge", is_flag=True, help="also delete the data: the Kafka log, Postgres, Redis, ClickHouse")
@click.pass_obj
def down(platform: Platform, purge: bool) -> None:
    """Stop exactly the processes `up` started. Data stays for the next `up` unless --purge."""
    try:
        results = platform.stack.down(purge=purge)
    except USER_ERRORS as e:
        fail(str(e))
    stopped = [r for r in results if r.was_running]
    click.echo(f"stopped {len(stopped)} process(es)" + (": " + ", ".join(str(r.pid) for r in stopped) if stopped else ""))
    click.echo(f"data {'deleted' if purge else 'kept'}: {platform.stack.data_dir}")


@click.group()
def topics() -> None:
    """Kafka topics of this deployment."""


@topics.command("create")
@click.pass_obj
def topics_create(platform: Platform) -> None:
    """Create missing topics with the configured partition counts."""
    try:
        states = run(platform.ensure_topics())
    except USER_ERRORS as e:
        fail(str(e))
    click.echo(table([[s.name, str(s.partitions), "created" if s.created else "existed"] for s in states],
                     ["topic", "partitions", "state"]))
