"""``qi demo``: the README's first command. A demo workload through the whole running platform."""

from __future__ import annotations

import asyncio
import json

import click

from events.models import EventMetadata
from qi.cli._common import USER_ERRORS, fail, run, table
from qi.demo import plant, show
from qi.demo.world import EXPECTED, world_events
from qi.platform import Platform


@click.command()
@click.option("--timeout", "timeout_s", type=float, default=240.0, show_default=True,
              help="how long to wait for the workers' results")
@click.pass_context
def demo(ctx: click.Context, timeout_s: float) -> None:
    """Feed the running platform a demo workload and show what every worker made of it.

    Starts the platform first if it is not running (`qi up`). Publishes two
    calibration labs with hybrid keys, four assets, five certificates (one
    revoked, one forged, one outside its lab's accreditation) and, through a
    simulated gateway over MQTT and the bridge, 1,200 sensor readings with a
    spike and a level shift. Then shows the verdicts, scores and alerts, the
    read models and a verified inclusion proof. Safe to run again: every
    event has a deterministic id, so nothing is duplicated.
    """
    from qi.cli.fleet import running, up

    platform: Platform = ctx.obj
    if not running(platform):
        ctx.invoke(up)
    _wait_ready(platform, timeout_s)
    try:
        ok = run(_demo(platform, timeout_s))
    except USER_ERRORS as e:
        fail(str(e))
    click.echo(
        "\nWhere to look next:\n"
        "  qi ps                               the workers, their health and lag\n"
        "  qi tail validations -n 5            verdicts with every check (also: scores, alerts, deadletter)\n"
        "  qi sql \"SELECT event_type, count() FROM events GROUP BY 1\"   the analysts' warehouse\n"
        "  qi audit prove <event id>           an inclusion proof; qi audit verify checks the whole log\n"
        + _api_hint(platform) +
        f"  {platform.stack.run_dir / 'logs'}/   one log file per worker\n"
        "  qi down                             stop everything (data is kept; --purge deletes it)"
    )
    raise SystemExit(0 if ok else 1)


def _api_hint(platform: Platform) -> str:
    """The HTTP API's address (docs/api.md), if the api worker has announced one."""
    from streams.health import announced_url

    url = announced_url(platform.stack.run_dir, "api")
    if url is None:
        return ""
    return (f"  curl {url}/verify/DCC-DEMO-0001    public certificate verification (HTTP API, docs/api.md)\n"
            f"  curl -H \"Authorization: Bearer $(qi tokens issue --role reader --subject me)\" {url}/twins\n")


async def _demo(platform: Platform, timeout_s: float) -> bool:
    serde = await platform.serde()
    world: list[EventMetadata] = world_events(platform.stack.run_dir / "demo-keys")
    async with platform.publisher(serde) as pub:
        await pub.publish_many(world)
    kinds = ", ".join(f"{n} {t}" for t, n in sorted(_count(world).items()))
    click.echo(f"published {len(world)} events: {kinds}")
    sent = await asyncio.to_thread(_publish_readings, platform)
    click.echo(f"published {sent} sensor readings over MQTT through the bridge "
               f"({len(plant.SENSORS)} sensors, a spike on gauge-0001/s1, a level shift on thermo-0002/s1)")

    click.echo("\nwaiting for the workers...")
    verdicts = await show.poll(lambda: show.verdicts(platform, serde), timeout_s=timeout_s)
    click.echo("\ncertificate validation (qi worker validate):")
    rows = []
    for cid, expected in EXPECTED.items():
        v = verdicts.latest.get(cid)
        failed = [c["check"] for c in v["checks"] if c["outcome"] == "FAIL"] if v else []
        status = "revoked" if cid in verdicts.revoked else "-"
        rows.append([cid, v["verdict"] if v else "(none yet)", ", ".join(failed) or "-", status, expected])
    click.echo(table(rows, ["certificate", "verdict", "failed checks", "lifecycle", "expected"]))

    scored = await show.poll(lambda: show.scores(platform, serde), timeout_s=timeout_s)
    click.echo(f"\nanomaly scoring (qi worker score): {scored.scored} of {scored.expected} readings scored")
    click.echo(table([[f"{t}/{s}", f"{m:.3f}", str(scored.raised.get((t, s), 0))]
                      for (t, s), m in sorted(scored.max_score.items())],
                     ["sensor", "highest score", "alerts raised"]))
    for a in scored.alerts:
        click.echo(f"  alert {a['state']:<7} {a['twin_id']}/{a['sensor_id']} at {a['occurred_at']:%Y-%m-%d %H:%M} "
                   f"score {a['score']:.3f} (threshold {a['threshold']})")

    ok_models = await _read_models(platform, timeout_s)

    cert = next(e for e in world if e.event_type == "CertificateIssued")
    proof = await show.poll(lambda: show.prove(platform, str(cert.event_id)), timeout_s=timeout_s)
    click.echo("\naudit log (qi worker audit):")
    if proof.document is None:
        click.secho("  no signed tree head covers the certificate yet", fg="red")
    else:
        d = proof.document
        click.echo(f"  {cert.certificate_id} is leaf {d['leaf_index']} of {d['tree_size']}; inclusion proof:")
        click.echo("  " + json.dumps({k: d[k] for k in ("leaf_index", "tree_size", "leaf_hash", "hashes")}))
        click.echo("  checkpoint (C2SP signed note):")
        click.echo("\n".join("    " + line for line in d["checkpoint"].splitlines()))
        if proof.verdict:
            click.echo(f"  verified with the log's public keys only (Ed25519 and ML-DSA-65): {proof.verdict}")
        else:
            click.secho(f"  proof FAILED: {proof.error}", fg="red")

    ok = (verdicts.done and scored.done and ok_models and proof.verdict is not None
          and all(_matches(verdicts, cid) for cid in EXPECTED))
    click.echo("\n" + ("every worker produced what the demo's inputs imply" if ok
                       else "some results are missing or unexpected: see `qi ps` and the worker logs"))
    return ok


def _wait_ready(platform: Platform, timeout_s: float) -> None:
    """Every worker ready (in its group, caught up; the bridge subscribed): an MQTT message sent
    before the bridge's first subscription would have no session to wait in."""
    import time

    from qi.cli.fleet import _health
    from qi.fleet.supervisor import load_state

    deadline = time.monotonic() + timeout_s
    waiting: list[str] = []
    while time.monotonic() < deadline:
        state = load_state(platform.stack.run_dir)
        names = list(state.instances) if state else []
        waiting = [n for n in names if _health(platform.stack.run_dir, n)[0] != "ready"]
        if names and not waiting:
            return
        time.sleep(0.5)
    click.secho(f"not ready after {timeout_s:.0f} s: {', '.join(waiting)} (see `qi ps`); going on", fg="yellow")


def _matches(verdicts: show.Verdicts, cid: str) -> bool:
    v = verdicts.latest.get(cid)
    return v is not None and v["verdict"] == EXPECTED[cid].split(":")[0].split(",")[0]


def _count(events: list[EventMetadata]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        out[e.event_type] = out.get(e.event_type, 0) + 1
    return out


def _publish_readings(platform: Platform) -> int:
    from connectors.mqtt.gateway import Gateway

    url = platform.endpoints().mqtt
    if url is None:
        raise click.ClickException("no MQTT broker: run `qi stack up` or set QI_MQTT_URL")
    gw = Gateway(url, client_id="qi-demo-gateway")
    gw.connect()
    try:
        return gw.publish_all(plant.messages(), rate_per_s=1000)
    finally:
        gw.close()


async def _read_models(platform: Platform, timeout_s: float) -> bool:
    """The demo world as the three read models hold it (the same lines on every run: nothing doubles)."""
    models = await show.poll(lambda: show.read_models(platform), timeout_s=timeout_s)
    click.echo("\nread models (qi worker project):")
    for line in models.lines():
        click.echo(f"  read model {line}")
    for problem in models.problems:
        click.secho(f"  {problem}", fg="red")
    return models.done
