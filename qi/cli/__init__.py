"""The ``qi`` command. Settings are read here, once, and passed down."""

from __future__ import annotations

import click

from qi.cli.anomaly import anomaly
from qi.cli.api import api, tokens
from qi.cli.audit import audit
from qi.cli.bridge import bridge, gateway
from qi.cli.demo import demo
from qi.cli.replay import replay
from qi.cli.events import publish, tail
from qi.cli.schemas import schemas
from qi.cli.sql import sql
from qi.cli.stack import stack, topics
from qi.cli.worker import worker
from qi.cli.validate import validate
from qi.cli.trust import certificates, issuers, keys
from qi.cli.fleet import down, ps, supervise, up
from qi.cli.projections import projections
from qi.config import Settings
from qi.logging import configure_logging
from qi.platform import Platform


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """QI Stream: event-sourced quality infrastructure on Kafka.

    Endpoints come from QI_KAFKA_BOOTSTRAP, QI_POSTGRES_DSN, QI_CLICKHOUSE_DSN,
    QI_REDIS_URL, QI_MQTT_URL; any left unset uses the local stack (`qi stack up`).
    """
    settings = Settings.from_env()
    configure_logging(settings.log)
    ctx.obj = Platform(settings)


for command in (stack, topics, publish, tail, schemas, demo, worker, up, ps, down, supervise):
    cli.add_command(command)
cli.add_command(anomaly)
cli.add_command(projections)
worker.add_command(validate)
for command in (keys, issuers, certificates):
    cli.add_command(command)
cli.add_command(audit)
cli.add_command(replay)
for command in (bridge, gateway):
    cli.add_command(command)
cli.add_command(sql)
for command in (api, tokens):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="qi")
