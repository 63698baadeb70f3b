"""`qi anomaly backtest` end to end on a generated CSV (no stack needed)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np


def test_backtest_writes_a_row_per_reading_and_a_picture(tmp_path):
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    src = tmp_path / "s.csv"
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["when", "reading"])
        for i in range(1500):
            w.writerow([(t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S"),
                        10 + rng.normal(0, 0.2) + (9 if i == 1000 else 0)])
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"s.csv": [["2026-01-04 10:00:00", "2026-01-04 14:00:00"]]}))
    out, png = tmp_path / "scores.csv", tmp_path / "scores.png"
    p = subprocess.run([sys.executable, "-m", "qi", "anomaly", "backtest", "--csv", str(src), "--timestamp-col", "when",
                        "--value-col", "reading", "--out", str(out), "--plot", str(png), "--labels", str(labels)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1500 and list(rows[0]) == ["timestamp", "value", "score", "is_anomaly", "alert"]
    assert [i for i, r in enumerate(rows) if r["alert"] == "RAISED"] == [1000]
    assert rows[1000]["is_anomaly"] == "1" and float(rows[1000]["score"]) >= 0.5
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_backtest_reports_a_missing_column(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text("timestamp,v\n2026-01-01 00:00:00,1\n")
    p = subprocess.run([sys.executable, "-m", "qi", "anomaly", "backtest", "--csv", str(src), "--out",
                        str(tmp_path / "o.csv")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "no column 'value'" in p.stderr
