"""Our anomaly scorer against NAB's windowed-Gaussian baseline on the NAB development slice.

Both detectors run over every series of ``--corpus`` (data/ + labels/combined_windows.json +
profiles.json, NAB's layout) and are scored the same way (bench/nab_scoring.py): a detection is
the start of an alert episode (one RAISED event), with the same threshold and hysteresis for both.
Prints per series: windows detected, false positives, raw NAB score; then the normalised NAB
score of the corpus per detector. Writes bench/results/nab.json; ``--plots DIR`` also writes one
backtest picture per series.

    python -m bench.nab [--corpus /work/shared/conformance/nab-dev] [--profile standard] [--plots docs/img]
"""

from __future__ import annotations

import os.path
import sys

# `python bench/nab.py` puts bench/ first on sys.path, where bench/platform.py would shadow the
# standard library's `platform` (imported by numpy, uuid...): drop it, the repository root goes in below.
if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)

import argparse
import json
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import report  # noqa: E402
from bench.nab_scoring import normalised, score_series  # noqa: E402
from streams.anomaly import backtest  # noqa: E402
from streams.anomaly.baseline import windowed_gaussian  # noqa: E402
from streams.anomaly.config import ScorerConfig  # noqa: E402


def window_rows(series: backtest.Series, windows: list[list[str]]) -> list[tuple[int, int]]:
    t = series.times_s
    out = []
    for lo, hi in windows:
        a, b = backtest.parse_time(lo).timestamp(), backtest.parse_time(hi).timestamp()
        idx = np.flatnonzero((t >= a) & (t <= b))
        if len(idx):
            out.append((int(idx[0]), int(idx[-1])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=Path("/work/shared/conformance/nab-dev"))
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--plots", type=Path, default=None)
    args = ap.parse_args()
    labels = json.loads((args.corpus / "labels" / "combined_windows.json").read_text())
    weights = json.loads((args.corpus / "profiles.json").read_text())[args.profile]["CostMatrix"]
    w = dict(tp_weight=weights["tpWeight"], fp_weight=weights["fpWeight"], fn_weight=weights["fnWeight"])
    config = ScorerConfig()
    rows, per = [], {"ours": [], "baseline": []}
    for name in sorted(labels):
        series = backtest.read_series(args.corpus / "data" / name)
        wins = window_rows(series, labels[name])
        ours = backtest.run(series, config)
        base = windowed_gaussian(series.times_s, series.values, config)
        s_ours = score_series(ours.detections, wins, len(series.values), **w)
        s_base = score_series(base.detections, wins, len(series.values), **w)
        per["ours"].append(s_ours)
        per["baseline"].append(s_base)
        rows.append({"series": name, "windows": len(wins),
                     "ours_detected": s_ours.tp, "ours_fp": s_ours.fp, "ours_raw": round(s_ours.raw, 3),
                     "gauss_detected": s_base.tp, "gauss_fp": s_base.fp, "gauss_raw": round(s_base.raw, 3)})
        if args.plots:
            args.plots.mkdir(parents=True, exist_ok=True)
            spans = [(backtest.parse_time(a), backtest.parse_time(b)) for a, b in labels[name]]
            backtest.plot(ours, args.plots / f"nab-{Path(name).stem}.png", title=name, windows=spans,
                          threshold=config.raise_at)
    total = {"ours": normalised(per["ours"]), "baseline": normalised(per["baseline"])}
    rows.append({"series": f"NAB {args.profile} score (normalised, corpus)", "windows": sum(r["windows"] for r in rows),
                 "ours_detected": sum(s.tp for s in per["ours"]), "ours_fp": sum(s.fp for s in per["ours"]),
                 "ours_raw": round(total["ours"], 1),
                 "gauss_detected": sum(s.tp for s in per["baseline"]), "gauss_fp": sum(s.fp for s in per["baseline"]),
                 "gauss_raw": round(total["baseline"], 1)})
    report("nab", rows, params={"corpus": str(args.corpus), "profile": args.profile, "weights": weights,
                                "nab_standard_ours": total["ours"], "nab_standard_baseline": total["baseline"],
                                "at": datetime.now().isoformat(timespec="seconds")})


if __name__ == "__main__":
    main()
