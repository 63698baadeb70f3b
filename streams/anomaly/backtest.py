"""Offline backtest: the worker's scorer over a CSV, batch by batch, and an optional picture."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from streams.anomaly.config import ScorerConfig
from streams.anomaly.scorer import ALERT_CLEARED, ALERT_RAISED, Scorer

ALERT_NAMES = {ALERT_RAISED: "RAISED", ALERT_CLEARED: "CLEARED"}


class BacktestInputError(ValueError):
    """The CSV cannot be backtested (missing column, unparsable row); ``row`` is 1-based."""

    def __init__(self, message: str, *, row: int | None = None) -> None:
        super().__init__(message if row is None else f"row {row}: {message}")
        self.row = row


@dataclass(frozen=True, slots=True)
class Series:
    timestamps: list[str]
    times_s: np.ndarray
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class Backtest:
    series: Series
    score: np.ndarray
    is_anomaly: np.ndarray
    alert: np.ndarray

    @property
    def detections(self) -> np.ndarray:
        """Row indices where an alert episode was RAISED."""
        return np.flatnonzero(self.alert == ALERT_RAISED)


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def read_series(path: Path, timestamp_col: str = "timestamp", value_col: str = "value") -> Series:
    stamps: list[str] = []
    times: list[float] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for col in (timestamp_col, value_col):
            if col not in (reader.fieldnames or []):
                raise BacktestInputError(f"no column {col!r} in {path} (columns: {reader.fieldnames})")
        for i, row in enumerate(reader, start=2):
            try:
                times.append(parse_time(row[timestamp_col]).timestamp())
                values.append(float(row[value_col]))
            except (TypeError, ValueError) as e:
                raise BacktestInputError(str(e), row=i) from e
            stamps.append(row[timestamp_col])
    return Series(stamps, np.array(times), np.array(values))


def run(series: Series, config: ScorerConfig | None = None, *, batch: int = 1000, key: str = "series") -> Backtest:
    """Score a series exactly as the worker would, ``batch`` readings per call."""
    scorer = Scorer(config)
    parts = [scorer.score_batch([key] * (j - i), series.times_s[i:j], series.values[i:j])
             for i, j in _chunks(len(series.values), batch)]
    if not parts:
        e = np.zeros(0)
        return Backtest(series, e, e.astype(bool), e.astype(np.int8))
    return Backtest(series, np.concatenate([p.score for p in parts]),
                    np.concatenate([p.is_anomaly for p in parts]), np.concatenate([p.alert for p in parts]))


def write_csv(result: Backtest, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "score", "is_anomaly", "alert"])
        s = result.series
        for ts, v, sc, a, al in zip(s.timestamps, s.values, result.score, result.is_anomaly, result.alert):
            w.writerow([ts, repr(float(v)), f"{sc:.6f}", int(a), ALERT_NAMES.get(int(al), "")])


def plot(result: Backtest, path: Path, *, title: str = "", windows: list[tuple[datetime, datetime]] = (),
         threshold: float | None = None) -> None:
    """Series (top) with labelled windows and detections; score (bottom) with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.series
    when = [datetime.fromtimestamp(t, UTC) for t in s.times_s]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 5.5), sharex=True, height_ratios=(3, 2))
    ax1.plot(when, s.values, lw=0.7, color="#335")
    for lo, hi in windows:
        for ax in (ax1, ax2):
            ax.axvspan(lo, hi, color="#f5c542", alpha=0.3, lw=0)
    det = result.detections
    ax1.scatter([when[i] for i in det], s.values[det], color="#d22", zorder=3, s=30, label="alert raised")
    anomalous = np.where(result.is_anomaly, s.values, np.nan)
    ax1.plot(when, anomalous, lw=1.4, color="#d22", alpha=0.7)
    ax1.set_ylabel("value")
    ax1.set_title(title)
    ax1.legend(loc="upper left", fontsize=8)
    ax2.plot(when, result.score, lw=0.7, color="#363")
    if threshold is not None:
        ax2.axhline(threshold, color="#d22", ls="--", lw=0.8)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("score")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]
