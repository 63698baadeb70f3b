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
        rounds, rank = _rounds(slots)
        c, st = self.config, self.sensors
        # Everything that depends only on the readings and the sensors' counts, for the whole batch:
        # the rounds below then carry only the recurrences (level, scales, profiles, tails).
        n_seen = st.count[slots] + rank
        first = n_seen == 0  # a new sensor's first reading (always in round 0)
        st.first_t[slots[first]] = times_s[first]
        st.level[slots[first]] = values[first]
        span = times_s - st.first_t[slots]
        ready = np.column_stack((np.ones(n, bool), span >= 2 * _DAY, span >= 2 * _WEEK))
        daily_b = ((times_s % _DAY) * (c.daily_buckets / _DAY)).astype(np.int64) % c.daily_buckets
        weekly_b = (((times_s + _MONDAY) % _WEEK) * (c.weekly_buckets / _WEEK)).astype(np.int64) % c.weekly_buckets
        live = (n_seen >= c.warmup) & (n_seen >= c.window)
        warm = n_seen < c.warmup
        inv = 1.0 / (n_seen + 1.0)
        a_scale = np.maximum(c.scale_alpha, inv)[:, None]
        a_level = np.maximum(c.level_alpha, inv)
        rows = _Rows(n, c.window)
        for idx in rounds:
            self._advance(idx, slots[idx], values[idx], daily_b[idx], weekly_b[idx], ready[idx], live[idx],
                          warm[idx], a_scale[idx], a_level[idx], rows)
        st.count += np.bincount(slots, minlength=st.capacity)[: st.capacity]
        base = np.where(live, self._tail_surprise(rows.z, rows.tail_rate, rows.tail_excess), 0.0)
        feats = np.empty((n, N_FEATURES))
        feats[:, 0] = np.clip(rows.z, -50, 50)
        feats[:, 1] = np.clip(rows.win_z.mean(axis=1), -50, 50)
        feats[:, 2] = np.log((rows.win_v.std(axis=1) + rows.floor) / rows.scale)
        counted = live
        surprise = base
        if counted.any():
            sel = np.flatnonzero(counted)
            surprise = base.copy()
            surprise[sel] = np.maximum(base[sel], self.forest.surprise(feats[sel]))
        score = np.clip(surprise / self.config.surprise_max, 0.0, 1.0) * counted
        is_anomaly = np.zeros(n, bool)
        alert = np.zeros(n, np.int8)
        # Hysteresis only moves for sensors inside an episode or reaching the raise threshold in
        # this batch; every other sensor stays calm (inactive, calm count 0) and needs no round.
        involved = st.active[slots] | (score >= c.raise_at)
        if involved.any():
            hot = np.zeros(st.capacity, bool)
            hot[slots[involved]] = True
            hot_rows = hot[slots]
            for idx in rounds:
                idx = idx[hot_rows[idx]]
                if len(idx):
                    self._hysteresis(idx, slots[idx], score, is_anomaly, alert)
        return BatchScores(score, is_anomaly, alert)

    def _advance(self, idx, s, x, db, wb, ready, live, warm, a_scale, a_level, rows) -> None:  # noqa: ANN001
        """One round: the k-th reading of each of its sensors, through the recurrences."""
        c, st = self.config, self.sensors
        lvl = st.level[s]
        pd = st.daily[s, db].astype(np.float64)
        pw = st.weekly[s, wb].astype(np.float64)
        no_d, no_w = np.isnan(pd), np.isnan(pw)
        k = rows.arange[: len(idx)]
        pred = np.empty((len(idx), 3))
        pred[:, 0] = lvl
        pred[:, 1] = np.where(no_d, lvl, pd)
        pred[:, 2] = np.where(no_w, lvl, pw)
        resid = x[:, None] - pred
        floor = c.scale_floor * np.abs(lvl) + 1e-12
        scale = st.scale[s]
        scales = np.maximum(scale * _MEAN_ABS_TO_SD, floor[:, None])
        pick = np.argmin(np.where(ready, scales, np.inf), axis=1)
        chosen = scales[k, pick]
        z = resid[k, pick] / chosen
        # short window: ring buffers of raw values and z; each row keeps its window for the features
        pos = st.pos[s]
        st.values[s, pos] = x
        st.zs[s, pos] = np.clip(z, -1e6, 1e6)
        st.pos[s] = (pos + 1) % c.window
        rows.win_v[idx] = st.values[s]
        rows.win_z[idx] = st.zs[s]
        rows.z[idx] = z
        rows.floor[idx] = floor
        rows.scale[idx] = chosen
        # learn: fast running means while warming up, robust EWMAs afterwards
        absr = np.abs(resid)
        absr = np.where(warm[:, None], absr, np.minimum(absr, c.winsor * scales))
        st.scale[s] = scale + a_scale * (absr - scale)
        st.level[s] = lvl + a_level * (x - lvl)
        st.daily[s, db] = np.where(no_d, x, pd + c.season_alpha * (x - pd))
        st.weekly[s, wb] = np.where(no_w, x, pw + c.season_alpha * (x - pw))
        # the sensor's own tail: how often |z| exceeds TAIL_U and by how much (after warm-up); the
        # surprise of this reading is judged against the tail as it was before it
        tr, te = st.tail_rate[s], st.tail_excess[s]
        rows.tail_rate[idx] = tr
        rows.tail_excess[idx] = te
        over = np.abs(z) - TAIL_U
        hit = live & (over > 0)
        st.tail_rate[s] = tr + np.where(live, c.tail_rate_alpha * (hit - tr), 0.0)
        st.tail_excess[s] = te + np.where(hit, c.tail_excess_alpha * (np.minimum(over, 10.0) - te), 0.0)

    @staticmethod
    def _tail_surprise(z: np.ndarray, tail_rate: np.ndarray, tail_excess: np.ndarray) -> np.ndarray:
        """-log10 P(|Z| >= |z|): the larger of the Gaussian tail and the sensor's exponential tail.

        Peaks over threshold: beyond |z| = 2 the excess is modelled as exponential with the rate and
        mean excess this sensor has shown, so a heavy-tailed (spiky) sensor needs a bigger deviation
        to be surprising than a Gaussian one, while a Gaussian sensor is judged as Gaussian.
        """
        over = np.maximum(np.abs(z) - TAIL_U, 0.0)
        log_tail = np.log(tail_rate) - over / tail_excess
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


class _Rows:
    """Per reading of a batch, what the rounds leave for the batch-wide steps after them."""

    __slots__ = ("z", "floor", "scale", "tail_rate", "tail_excess", "win_v", "win_z", "arange")

    def __init__(self, n: int, window: int) -> None:
        self.arange = np.arange(n)
        self.z = np.empty(n)
        self.floor = np.empty(n)
        self.scale = np.empty(n)
        self.tail_rate = np.empty(n)
        self.tail_excess = np.empty(n)
        self.win_v = np.empty((n, window))
        self.win_z = np.empty((n, window), np.float32)


def _rounds(slots: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Row indices grouped by occurrence (round k holds every sensor's k-th row of the batch),
    and each row's k."""
    n = len(slots)
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.r_[0, np.flatnonzero(sorted_slots[1:] != sorted_slots[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - run_start
    by_rank = np.argsort(rank, kind="stable")
    counts = np.bincount(rank)
    return np.split(by_rank, np.cumsum(counts)[:-1]), rank
