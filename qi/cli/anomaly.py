"""``qi anomaly backtest``: the scoring worker's scorer, offline over a CSV."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qi.cli._common import fail
from qi.platform import Platform


@click.group()
def anomaly() -> None:
    """Anomaly scoring tools."""


@anomaly.command()
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--timestamp-col", default="timestamp", show_default=True)
@click.option("--value-col", default="value", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="scores CSV: timestamp, value, score, is_anomaly, alert")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PNG picture")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="NAB combined_windows.json: draws the labelled windows of this file")
@click.pass_obj
def backtest(platform: Platform, csv_path: Path, timestamp_col: str, value_col: str, out: Path,
             plot: Path | None, labels: Path | None) -> None:
    """Score a CSV exactly as `qi worker score` would and write one row per reading."""
    from streams.anomaly import ScorerConfig
    from streams.anomaly import backtest as bt

    a = platform.settings.anomaly
    config = ScorerConfig(warmup=a.warmup, raise_at=a.raise_at, clear_at=a.clear_at, clear_after=a.clear_after)
    try:
        series = bt.read_series(csv_path, timestamp_col, value_col)
    except bt.BacktestInputError as e:
        fail(str(e))
    result = bt.run(series, config)
    bt.write_csv(result, out)
    windows = []
    if labels is not None:
        table = json.loads(labels.read_text())
        mine = next((v for k, v in table.items() if csv_path.as_posix().endswith(k)), [])
        windows = [(bt.parse_time(lo), bt.parse_time(hi)) for lo, hi in mine]
    if plot is not None:
        bt.plot(result, plot, title=csv_path.name, windows=windows, threshold=config.raise_at)
    click.echo(f"{len(series.values)} readings scored, {len(result.detections)} alert(s) raised -> {out}"
               + (f", picture {plot}" if plot else ""))
