"""``qi publish`` and ``qi tail``."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click

from events import jsonfmt
from events.errors import PublishError
from events.jsonl import parse_lines
from events.reader import ConsumedRecord
from qi.cli._common import USER_ERRORS, fail, run
from qi.platform import Platform


def line_ranges(lines: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'"""
    runs: list[list[int]] = []
    for n in sorted(lines):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@click.command()
@click.option("--file", "-f", "path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="JSON lines, one event each ('-' for standard input)")
@click.option("--source", default=None, help="`source` for lines without one [default: qi-cli:<file name>]")
@click.option("--dry-run", is_flag=True, help="validate every line, send nothing")
@click.pass_obj
def publish(platform: Platform, path: str, source: str | None, dry_run: bool) -> None:
    """Validate a JSON-lines file, then publish every valid line.

    Every bad line is reported with its line number, field and reason. Exit
    status: 0 if every line was published, 1 if any line failed, 2 on errors
    that stopped the command.
    """
    name = "<stdin>" if path == "-" else Path(path).name
    try:
        with click.open_file(path, "rb") as f:  # bytes: a non-UTF-8 line fails alone (parse_lines)
            parsed = parse_lines(f, default_source=source or f"qi-cli:{name}")
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}")
    for err in parsed.errors:
        where = f"{name}:{err.line}" + (f": field {err.field}" if err.field else "")
        click.secho(f"{where}: {err.reason}", fg="red", err=True)
    good = [n for n, _ in parsed.events]
    bad = [e.line for e in parsed.errors]
    if dry_run:
        click.echo(f"dry run: {len(good)} valid line(s)" + (f" ({line_ranges(good)})" if good else "")
                   + f", {len(bad)} invalid" + (f" ({line_ranges(bad)})" if bad else ""))
        raise SystemExit(1 if bad else 0)
    deliveries = []
    if parsed.events:
        try:
            deliveries = run(_publish(platform, [e for _, e in parsed.events]))
        except PublishError as e:
            click.secho(f"publishing stopped: {e}", fg="red", err=True)
            click.echo(
                f"0 of {len(good)} valid line(s) confirmed; some may have reached the broker. "
                "Re-running is safe: lines without event_id get the same id again and sinks deduplicate.",
                err=True,
            )
            raise SystemExit(1) from e
        except USER_ERRORS as e:
            fail(str(e))
    per_topic = Counter(d.topic for d in deliveries)
    click.echo(
        f"published {len(deliveries)} of {len(good) + len(bad)} event(s) from {name}"
        + (f" (lines {line_ranges(good)})" if good else "")
        + (" to " + ", ".join(f"{t} ({n})" for t, n in sorted(per_topic.items())) if per_topic else "")
    )
    if bad:
        click.echo(f"{len(bad)} line(s) failed and were not published: {line_ranges(bad)}")
        raise SystemExit(1)


async def _publish(platform: Platform, events: list) -> list:
    serde = await platform.serde()
    async with platform.publisher(serde) as pub:
        return await pub.publish_many(events)


def _render(rec: ConsumedRecord) -> str:
    assert rec.decoded is not None
    return jsonfmt.dumps({
        "topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
        "key": rec.key.decode(errors="replace") if rec.key is not None else None,
        "event_type": rec.decoded.event_type, "schema_id": rec.decoded.schema_id,
        "event": rec.decoded.record,
    })


def _render_poison(rec: ConsumedRecord) -> str:
    assert rec.error is not None
    return jsonfmt.dumps({
        "topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
        "error_kind": rec.error.kind, "error": str(rec.error), "bytes": len(rec.value),
    })


@click.command()
@click.argument("topic")
@click.option("--from", "start_at", type=click.Choice(["beginning", "end"]), default="beginning", show_default=True)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None, help="stop after this many events")
@click.option("--follow", is_flag=True, help="keep waiting for new events until --limit or Ctrl-C")
@click.option("--wait", "wait_s", type=float, default=2.0, show_default=True,
              help="with --from end and no --follow: how long to wait for new events")
@click.pass_obj
def tail(platform: Platform, topic: str, start_at: str, limit: int | None, follow: bool, wait_s: float) -> None:
    """Print a topic's events as JSON lines.

    TOPIC is a family (twins, issuers, certificates, readings, validations,
    scores, alerts, audit, deadletter) or a full topic name. From the
    beginning it stops at the log end unless --follow. Undecodable records go
    to standard error with the reason.
    """
    try:
        count = run(_tail(platform, topic, start_at, limit, follow, wait_s))
    except KeyboardInterrupt:
        return
    except USER_ERRORS as e:
        fail(str(e))
    click.echo(f"{count} event(s)", err=True)


async def _tail(platform: Platform, topic: str, start_at: str, limit: int | None, follow: bool, wait_s: float) -> int:
    serde = await platform.serde()
    count = 0

    def emit(records: list[ConsumedRecord]) -> bool:
        nonlocal count
        for rec in records:
            if rec.error is not None:
                click.echo(_render_poison(rec), err=True)
            else:
                click.echo(_render(rec))
            count += 1
            if limit is not None and count >= limit:
                return True
        sys.stdout.flush()
        return False

    async with platform.reader(serde, [topic], start_at) as reader:  # type: ignore[arg-type]
        if follow:
            async for batch in reader.batches():
                if emit(batch):
                    break
        elif start_at == "beginning":
            emit(await reader.read_to_end(limit=limit))
        else:
            emit(await reader.read(limit=limit, idle_timeout_s=wait_s))
    return count
