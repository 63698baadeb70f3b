"""``qi demo``: the README's first command. Events round-trip through the broker."""

from __future__ import annotations

import time
from collections import Counter

import click

from events import jsonfmt
from qi.cli._common import USER_ERRORS, fail, run, table
from qi.platform import Platform
from qi.samples import sample_events


@click.command()
@click.pass_obj
def demo(platform: Platform) -> None:
    """Bring up the local stack, publish sample events, read them back and compare.

    Publishes issuers (with hybrid Ed25519 + ML-DSA-65 keys), twins, signed
    certificates and sensor readings, reads every topic back from the broker
    and checks each event decodes to exactly what was sent. Exits 1 if not.
    The stack keeps running afterwards (`qi stack down` stops it).
    """
    try:
        if platform.uses_local_stack:
            click.echo("starting the local stack (Kafka API, Postgres, Redis, MQTT, ClickHouse/chDB)...")
            for name, url in platform.stack.up().items():
                click.echo(f"  {name:<10} {url}")
        ok = run(_round_trip(platform))
    except USER_ERRORS as e:
        fail(str(e))
    if platform.uses_local_stack:
        click.echo("\nThe stack is still running. Next: `qi tail certificates -n 1`, `qi stack status`, `qi stack down`.")
    raise SystemExit(0 if ok else 1)


async def _round_trip(platform: Platform) -> bool:
    await platform.ensure_topics()
    serde = await platform.serde()
    events = sample_events()
    families = sorted({e.TOPIC_FAMILY for e in events})
    # Start reading at the current end, so only this run's events are compared.
    async with platform.reader(serde, families, "end") as reader:
        async with platform.publisher(serde) as pub:
            t0 = time.perf_counter()
            deliveries = await pub.publish_many(events)
            elapsed = time.perf_counter() - t0
        click.echo(f"\npublished {len(deliveries)} events to {len(families)} topics in {elapsed * 1000:.0f} ms "
                   "(every one confirmed by the broker)")
        records = await reader.read_to_end()
    sent = {str(e.event_id): e for e in events}
    back = {str(r.decoded.record["event_id"]): r for r in records if r.decoded}
    equal = Counter(sent[i].event_type for i, r in back.items() if i in sent and r.decoded.to_event() == sent[i])
    published = Counter(e.event_type for e in events)
    poison = [r for r in records if r.error]
    topic_of = {e.event_type: platform.topics.topic(e.TOPIC_FAMILY) for e in events}
    rows = [[t, str(n), str(equal.get(t, 0)), topic_of[t]] for t, n in sorted(published.items())]
    click.echo("read back from the broker and decoded:\n")
    click.echo(table(rows, ["event type", "published", "identical", "topic"]))
    cert = next(r for r in records if r.decoded and r.decoded.event_type == "CertificateIssued")
    shown = dict(cert.decoded.record)
    shown["signatures"] = [{**s, "value": f"<{len(s['value'])} bytes>"} for s in shown["signatures"]]
    click.echo(f"\none of them, as read from {cert.topic} partition {cert.partition} offset {cert.offset}:")
    click.echo(jsonfmt.dumps(shown, indent=2))
    ok = sum(equal.values()) == len(events) and not poison
    click.echo(f"\nround trip: {sum(equal.values())}/{len(events)} identical" + ("" if ok else f", {len(poison)} undecodable"))
    from qi.cli.demo_audit import prove_a_certificate  # the audit log: prove one certificate, verify it

    return await prove_a_certificate(platform, events) and ok
