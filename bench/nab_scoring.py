"""NAB's scoring rules (Lavin & Ahmad 2015; numenta/NAB ``nab/scorer.py`` + ``sweeper.py``), re-implemented.

For one series and one profile (tp/fp/fn weights):

* rows inside the probationary period (the first ``min(0.15 * len, 750)`` rows) are not scored;
* a detection inside a window scores ``tpWeight * sigma(pos) / sigma(-1)`` where ``pos`` runs from
  -1 at the window's left edge towards 0 at its right edge and ``sigma(x) = 2 / (1 + e^{5x}) - 1``;
  only the first (earliest, highest-scoring) detection of each window counts;
* a detection outside every window scores ``fpWeight * sigma(pos)`` where ``pos`` is its distance
  past the end of the preceding window in window lengths (so it is -fpWeight far from any window,
  and milder just after one); before the first window it is ``-fpWeight``;
* a window without a detection scores ``-fnWeight``.

A corpus score is normalised as NAB does: ``100 * (raw - null) / (perfect - null)`` where the null
detector detects nothing (every window a miss) and the perfect one detects every window at its
left edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def scaled_sigmoid(pos: float) -> float:
    if pos > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * pos)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


def probation_rows(n: int, percent: float = 0.15) -> int:
    return int(min(math.floor(percent * n), percent * 5000))


@dataclass(frozen=True)
class SeriesScore:
    raw: float
    null: float
    perfect: float
    tp: int          # windows detected
    fn: int          # windows missed
    fp: int          # detections outside every window (after probation)


def score_series(detections: np.ndarray, windows: list[tuple[int, int]], n: int, *,
                 tp_weight: float, fp_weight: float, fn_weight: float) -> SeriesScore:
    """``detections``: row indices; ``windows``: (first, last) row index pairs, sorted."""
    probation = probation_rows(n)
    detected = [False] * len(windows)
    raw = 0.0
    fp = 0
    for i in sorted(int(d) for d in detections):
        if i < probation:
            continue
        inside = next((w for w, (lo, hi) in enumerate(windows) if lo <= i <= hi), None)
        if inside is not None:
            if not detected[inside]:
                lo, hi = windows[inside]
                width = hi - lo + 1
                pos = -(hi - i + 1) / width
                raw += tp_weight * scaled_sigmoid(pos) / MAX_TP
                detected[inside] = True
            continue
        fp += 1
        before = [w for w in windows if w[1] < i]
        if not before:
            raw += fp_weight * -1.0
        else:
            lo, hi = before[-1]
            width = hi - lo + 1
            raw += fp_weight * scaled_sigmoid(abs(hi - i) / (width - 1))
    missed = detected.count(False)
    raw -= fn_weight * missed
    return SeriesScore(raw=raw, null=-fn_weight * len(windows), perfect=tp_weight * len(windows),
                       tp=len(windows) - missed, fn=missed, fp=fp)


def normalised(scores: list[SeriesScore]) -> float | None:
    raw = sum(s.raw for s in scores)
    null = sum(s.null for s in scores)
    perfect = sum(s.perfect for s in scores)
    if perfect == null:
        return None
    return 100.0 * (raw - null) / (perfect - null)
