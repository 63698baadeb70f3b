"""NAB's windowed-Gaussian detector, as a yardstick: mean and sd of the last 6,400 values,
recomputed every 100 values; surprise = -log10 of the value's Gaussian tail probability.
Its surprise goes through the same score mapping and hysteresis as the scorer, so both are
judged by the same alert rule."""

from __future__ import annotations

import numpy as np

from streams.anomaly.backtest import Backtest, Series
from streams.anomaly.config import ScorerConfig
from streams.anomaly.scorer import ALERT_CLEARED, ALERT_RAISED
from streams.anomaly.stats import gaussian_surprise

WINDOW, STEP = 6400, 100


def windowed_gaussian(times_s: np.ndarray, values: np.ndarray, config: ScorerConfig) -> Backtest:
    n = len(values)
    surprise = np.zeros(n)
    mean, sd = 0.0, 0.0
    for i in range(n):
        if i % STEP == 0 and i > 0:
            w = values[max(0, i - WINDOW):i]
            mean, sd = float(w.mean()), float(w.std())
        if i >= STEP and sd > 0:
            surprise[i] = gaussian_surprise(np.array([(values[i] - mean) / sd]))[0]
    score = np.clip(surprise / config.surprise_max, 0, 1)
    active, calm = False, 0
    is_anomaly = np.zeros(n, bool)
    alert = np.zeros(n, np.int8)
    for i, sc in enumerate(score):
        if not active and sc >= config.raise_at:
            active, calm, alert[i] = True, 0, ALERT_RAISED
        elif active:
            calm = calm + 1 if sc < config.clear_at else 0
            if calm >= config.clear_after:
                active, alert[i] = False, ALERT_CLEARED
        is_anomaly[i] = active
    return Backtest(Series([], times_s, values), score, is_anomaly, alert)
