"""``qi bridge mqtt``: the MQTT to Kafka bridge; ``qi gateway simulate``: a fake gateway feeding it."""

from __future__ import annotations

import asyncio
import os
import sys

import click

from connectors.mqtt.errors import MappingConfigError
from connectors.mqtt.mapping import load_mapping
from events.errors import PublishError
from qi.cli.worker import serve_until_signalled
from qi.platform import ConfigError, Platform


@click.group()
def bridge() -> None:
    """Bridges from the outside world into the log."""


@bridge.command("mqtt")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="mapping file (TOML), e.g. connectors/mqtt/examples/plant.toml")
@click.option("--check", is_flag=True, help="validate the mapping file and exit")
@click.pass_obj
def mqtt_bridge(platform: Platform, config_path: str, check: bool) -> None:
    """Subscribe to MQTT gateways and publish their readings to Kafka until SIGTERM."""
    try:
        mapping = load_mapping(config_path)
    except MappingConfigError as e:
        raise click.ClickException(str(e)) from None
    if check:
        click.echo(f"{config_path}: {len(mapping.mapping)} mapping(s) ok")
        return
    # Two threads share the GIL (paho's network thread, the event loop): hand it over sooner than
    # the default 5 ms, which otherwise shows up in the latency of every message.
    sys.setswitchinterval(0.001)
    try:
        asyncio.run(_run(platform, mapping))
    except (ConfigError, PublishError) as e:
        raise click.ClickException(str(e)) from None


async def _run(platform: Platform, mapping) -> None:  # noqa: ANN001
    await platform.ensure_topics()
    serde = await platform.serde()
    service = platform.mqtt_bridge(mapping, serde)
    await serve_until_signalled(platform, "bridge", service, [service.metrics.registry])


@click.group()
def gateway() -> None:
    """A simulated IoT gateway publishing readings over MQTT."""


@gateway.command("simulate")
@click.option("--count", default=100, show_default=True, help="messages to publish")
@click.option("--rate", default=50.0, show_default=True, help="messages per second (0: as fast as possible)")
@click.option("--twins", default=3, show_default=True)
@click.option("--sensors", default=3, show_default=True, help="sensors per twin")
@click.option("--format", "fmt", type=click.Choice(["json", "senml"]), default="json", show_default=True)
@click.option("--site", default="plant1", show_default=True)
@click.option("--gateway-id", default="gw-1", show_default=True)
@click.pass_obj
def simulate(platform: Platform, count: int, rate: float, twins: int, sensors: int, fmt: str, site: str,
             gateway_id: str) -> None:
    """Publish COUNT readings at QoS 1 on plants/<site>/<twin>/... (what examples/plant.toml maps)."""
    from connectors.mqtt.gateway import Gateway, readings

    url = platform.endpoints().mqtt
    if url is None:
        raise click.ClickException("no MQTT broker: run `qi stack up` or set QI_MQTT_URL")
    gw = Gateway(url, client_id=f"qi-gateway-{gateway_id}-{os.getpid()}")
    gw.connect()
    try:
        n = gw.publish_all(readings(site=site, twins=twins, sensors=sensors, count=count, gateway=gateway_id,
                                    fmt=fmt), rate_per_s=rate or None)
    finally:
        gw.close()
    click.echo(f"published {n} {fmt} message(s) to {url}")
