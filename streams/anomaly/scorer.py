"""The scorer: one call per batch, vectorised across sensors.

Per reading of a sensor (state in :class:`~streams.anomaly.state.SensorTable`):

1. Three predictors of the value: the local level (EWMA), the sensor's time-of-day profile and
   its hour-of-week profile (EWMA per bucket). Each keeps its own residual scale (EWMA of the
   winsorised absolute residual, a robust spread). The predictor used is the one with the
   smallest scale among those that have seen enough history (a seasonal profile needs two full
   periods), so seasonality is used where the data has it and ignored where it does not.
2. ``z = residual / scale``; the baseline's surprise is ``-log10`` of its two-sided Gaussian
   tail probability.
3. Short-window features (z, mean z of the last ``window`` readings, log of the window's spread
   over the scale) go through a shared IsolationForest (:mod:`streams.anomaly.forest`); its
   surprise is the one-sided tail of its score against its training window.
4. ``score = clip(max(surprises) / surprise_max, 0, 1)``; 0 during warm-up.
5. Hysteresis per sensor: RAISED when the score reaches ``raise_at``; CLEARED after
   ``clear_after`` consecutive readings below ``clear_at``.

A sensor's readings must be given in time order; readings of different sensors may interleave.
Within a batch, readings are processed in "rounds" (the k-th reading of every sensor at once),
so the per-sensor recurrences stay sequential while the arithmetic is vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.anomaly.config import MODEL_NAME, MODEL_VERSION, ScorerConfig
from streams.anomaly.forest import SharedForest
from streams.anomaly.state import TAIL_U, SensorTable
from streams.anomaly.stats import gaussian_surprise

ALERT_NONE, ALERT_RAISED, ALERT_CLEARED = 0, 1, 2
_DAY, _WEEK = 86_400.0, 604_800.0
_MONDAY = 3 * _DAY  # 1970-01-01 was a Thursday
N_FEATURES = 3
_MEAN_ABS_TO_SD = float(np.sqrt(np.pi / 2))  # sd of a Gaussian from its mean absolute deviation


@dataclass(frozen=True, slots=True)
class BatchScores:
    score: np.ndarray       # float64 in [0, 1]
    is_anomaly: np.ndarray  # bool: inside an alert episode after this reading
    alert: np.ndarray       # int8: ALERT_NONE / ALERT_RAISED / ALERT_CLEARED at this reading


class Scorer:
    model_name = MODEL_NAME
    model_version = MODEL_VERSION

    def __init__(self, config: ScorerConfig | None = None) -> None:
        self.config = config or ScorerConfig()
        self.sensors = SensorTable(self.config)
        self.forest = SharedForest(self.config, N_FEATURES)

    @property
    def threshold(self) -> float:
        return self.config.raise_at

    def score_batch(self, keys: list[str], times_s: np.ndarray, values: np.ndarray) -> BatchScores:
        """Score readings (``times_s``: epoch seconds) and advance every sensor's state."""
        n = len(keys)
        if n == 0:
            e = np.zeros(0)
            return BatchScores(e, e.astype(bool), e.astype(np.int8))
        times_s = np.asarray(times_s, np.float64)
        values = np.asarray(values, np.float64)
        slots = self.sensors.slots_for(keys)
        rounds = _rounds(slots)
        base = np.zeros(n)
        feats = np.zeros((n, N_FEATURES))
        counted = np.zeros(n, bool)
        for idx in rounds:
            self._advance(idx, slots[idx], times_s[idx], values[idx], base, feats, counted)
        surprise = base
        if counted.any():
            rows = np.flatnonzero(counted)
            surprise = base.copy()
            surprise[rows] = np.maximum(base[rows], self.forest.surprise(feats[rows]))
        score = np.clip(surprise / self.config.surprise_max, 0.0, 1.0) * counted
        is_anomaly = np.zeros(n, bool)
        alert = np.zeros(n, np.int8)
        for idx in rounds:
            self._hysteresis(idx, slots[idx], score, is_anomaly, alert)
        return BatchScores(score, is_anomaly, alert)

    def _advance(self, idx, s, t, x, base, feats, counted) -> None:  # noqa: ANN001
        c, st = self.config, self.sensors
        k = len(idx)
        n = st.count[s]
        new = n == 0
        if new.any():
            st.first_t[s[new]] = t[new]
            st.level[s[new]] = x[new]
        lvl = st.level[s]
        db = ((t % _DAY) * (c.daily_buckets / _DAY)).astype(np.int64) % c.daily_buckets
        wb = (((t + _MONDAY) % _WEEK) * (c.weekly_buckets / _WEEK)).astype(np.int64) % c.weekly_buckets
        pd = st.daily[s, db].astype(np.float64)
        pw = st.weekly[s, wb].astype(np.float64)
        pred = np.column_stack((lvl, np.where(np.isnan(pd), lvl, pd), np.where(np.isnan(pw), lvl, pw)))
        resid = x[:, None] - pred
        span = t - st.first_t[s]
        ready = np.column_stack((np.ones(k, bool), span >= 2 * _DAY, span >= 2 * _WEEK))
        floor = c.scale_floor * np.abs(lvl) + 1e-12
        scales = np.maximum(st.scale[s] * _MEAN_ABS_TO_SD, floor[:, None])
        pick = np.argmin(np.where(ready, scales, np.inf), axis=1)
        rows = np.arange(k)
        z = resid[rows, pick] / scales[rows, pick]
        # short window: ring buffers of raw values and z
        pos = st.pos[s]
        st.values[s, pos] = x
        st.zs[s, pos] = np.clip(z, -1e6, 1e6)
        st.pos[s] = (pos + 1) % c.window
        spread = st.values[s].std(axis=1)
        live = (n >= c.warmup) & (n >= c.window)
        counted[idx] = live
        base[idx] = np.where(live, self._tail_surprise(s, z), 0.0)
        feats[idx, 0] = np.clip(z, -50, 50)
        feats[idx, 1] = np.clip(st.zs[s].mean(axis=1), -50, 50)
        feats[idx, 2] = np.log((spread + floor) / scales[rows, pick])
        # learn: fast running means while warming up, robust EWMAs afterwards
        warm = n < c.warmup
        inv = 1.0 / (n + 1.0)
        a_scale = np.maximum(c.scale_alpha, inv)[:, None]
        a_level = np.maximum(c.level_alpha, inv)
        absr = np.abs(resid)
        absr = np.where(warm[:, None], absr, np.minimum(absr, c.winsor * scales))
        st.scale[s] += a_scale * (absr - st.scale[s])
        st.level[s] = lvl + a_level * (x - lvl)
        st.daily[s, db] = np.where(np.isnan(pd), x, pd + c.season_alpha * (x - pd))
        st.weekly[s, wb] = np.where(np.isnan(pw), x, pw + c.season_alpha * (x - pw))
        st.count[s] = n + 1
        # the sensor's own tail: how often |z| exceeds TAIL_U and by how much (after warm-up)
        over = np.abs(z) - TAIL_U
        hit = live & (over > 0)
        st.tail_rate[s] += np.where(live, c.tail_rate_alpha * (hit - st.tail_rate[s]), 0.0)
        st.tail_excess[s] += np.where(hit, c.tail_excess_alpha * (np.minimum(over, 10.0) - st.tail_excess[s]), 0.0)

    def _tail_surprise(self, s: np.ndarray, z: np.ndarray) -> np.ndarray:
        """-log10 P(|Z| >= |z|): the larger of the Gaussian tail and the sensor's exponential tail.

        Peaks over threshold: beyond |z| = 2 the excess is modelled as exponential with the rate and
        mean excess this sensor has shown, so a heavy-tailed (spiky) sensor needs a bigger deviation
        to be surprising than a Gaussian one, while a Gaussian sensor is judged as Gaussian.
        """
        st = self.sensors
        over = np.maximum(np.abs(z) - TAIL_U, 0.0)
        log_tail = np.log(st.tail_rate[s]) - over / st.tail_excess[s]
        log_gauss = -gaussian_surprise(z) * np.log(10.0)
        return np.maximum(-np.maximum(log_tail, log_gauss) / np.log(10.0), 0.0)

    def _hysteresis(self, idx, s, score, is_anomaly, alert) -> None:  # noqa: ANN001
        c, st = self.config, self.sensors
        sc = score[idx]
        was = st.active[s]
        raised = ~was & (sc >= c.raise_at)
        calm = np.where(was & (sc < c.clear_at), st.calm[s] + 1, 0)
        cleared = was & (calm >= c.clear_after)
        now = (was | raised) & ~cleared
        st.active[s] = now
        st.calm[s] = np.where(now, calm, 0)
        is_anomaly[idx] = now
        alert[idx] = np.where(raised, ALERT_RAISED, np.where(cleared, ALERT_CLEARED, ALERT_NONE))


def _rounds(slots: np.ndarray) -> list[np.ndarray]:
    """Row indices grouped by occurrence: round k holds every sensor's k-th row of the batch."""
    n = len(slots)
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.r_[0, np.flatnonzero(sorted_slots[1:] != sorted_slots[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - run_start
    by_rank = np.argsort(rank, kind="stable")
    counts = np.bincount(rank)
    return np.split(by_rank, np.cumsum(counts)[:-1])
