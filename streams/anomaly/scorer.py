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
        return score_batches([(self, keys, times_s, values)])[0]

    def _finish(self, slots: np.ndarray, live: np.ndarray, rows: _Rows) -> BatchScores:
        """After the recurrences: tail surprise, window features, the forest, hysteresis."""
        c, st = self.config, self.sensors
        n = len(slots)
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
            for idx in _rounds(slots)[0]:
                idx = idx[hot_rows[idx]]
                if len(idx):
                    self._hysteresis(idx, slots[idx], score, is_anomaly, alert)
        return BatchScores(score, is_anomaly, alert)

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
    """Per reading of one scorer's part of a batch, what the recurrences leave for ``_finish``."""

    __slots__ = ("z", "floor", "scale", "tail_rate", "tail_excess", "win_v", "win_z")

    def __init__(self, z, floor, scale, tail_rate, tail_excess, win_v, win_z) -> None:  # noqa: ANN001
        self.z, self.floor, self.scale = z, floor, scale
        self.tail_rate, self.tail_excess = tail_rate, tail_excess
        self.win_v, self.win_z = win_v, win_z


def score_batches(items: list[tuple[Scorer, list[str], np.ndarray, np.ndarray]]) -> list[BatchScores]:
    """Score several scorers' readings at once: ``(scorer, keys, times_s, values)`` each (distinct scorers).

    The per-sensor recurrences of every scorer of the same config run together (one numpy round
    serves the k-th reading of every sensor of all of them), so a worker that owns many partitions
    pays the per-round overhead once, not once per partition. Each element is computed by the same
    operations as scoring each scorer alone (the arithmetic is elementwise per sensor): the results
    are identical. The shared forests and the hysteresis stay per scorer.
    """
    out: list[BatchScores | None] = [None] * len(items)
    groups: dict[ScorerConfig, list[int]] = {}
    for i, (scorer, keys, _t, _v) in enumerate(items):
        if len(keys) == 0:
            e = np.zeros(0)
            out[i] = BatchScores(e, e.astype(bool), e.astype(np.int8))
        else:
            groups.setdefault(scorer.config, []).append(i)
    for config, members in groups.items():
        for i, res in zip(members, _score_group(config, [items[i] for i in members])):
            out[i] = res
    return out  # type: ignore[return-value]


def _score_group(c: ScorerConfig, items: list[tuple[Scorer, list[str], np.ndarray, np.ndarray]]) -> list[BatchScores]:
    w = c.window
    # Rows of all scorers back to back; each distinct (scorer, slot) is one compact sensor.
    parts, sizes, uniq_of, inv_of = [], [], [], []
    cid_base = 0
    for scorer, keys, _t, _v in items:
        slots = scorer.sensors.slots_for(keys)
        uniq, inv = np.unique(slots, return_inverse=True)
        parts.append(slots)
        sizes.append(len(slots))
        uniq_of.append(uniq)
        inv_of.append(inv + cid_base)
        cid_base += len(uniq)
    times_s = np.concatenate([np.asarray(t, np.float64) for _s, _k, t, _v in items])
    values = np.concatenate([np.asarray(v, np.float64) for _s, _k, _t, v in items])
    cid = np.concatenate(inv_of)
    n, m_all = len(cid), cid_base
    # Compact state: the batch's sensors only, gathered from their tables (written back below).
    tables = [scorer.sensors for scorer, *_ in items]
    g = _Compact(tables, uniq_of)
    # each row's k: its rank among its sensor's rows of the batch
    order = np.argsort(cid, kind="stable")
    per_sensor = np.bincount(cid, minlength=m_all)
    starts = np.r_[0, np.cumsum(per_sensor)[:-1]]
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, per_sensor)
    # Everything that depends only on the readings and the sensors' counts, for the whole batch:
    # the rounds below then carry only the recurrences (level, scales, profiles, tails).
    n_seen = g.count[cid] + rank
    first = n_seen == 0  # a new sensor's first reading (always in round 0)
    g.first_t[cid[first]] = times_s[first]
    g.level[cid[first]] = values[first]
    span = times_s - g.first_t[cid]
    ready = np.column_stack((np.ones(n, bool), span >= 2 * _DAY, span >= 2 * _WEEK))
    daily_b = ((times_s % _DAY) * (c.daily_buckets / _DAY)).astype(np.int64) % c.daily_buckets
    weekly_b = (((times_s + _MONDAY) % _WEEK) * (c.weekly_buckets / _WEEK)).astype(np.int64) % c.weekly_buckets
    live = (n_seen >= c.warmup) & (n_seen >= c.window)
    warm = n_seen < c.warmup
    inv = 1.0 / (n_seen + 1.0)
    a_scale = np.maximum(c.scale_alpha, inv)
    a_level = np.maximum(c.level_alpha, inv)
    z, floor, chosen, tail_rate, tail_excess = _recurrences(c, g, cid, rank, per_sensor, values, daily_b, weekly_b,
                                                            ready, live, warm, a_scale, a_level)
    win_v, win_z = g.windows(cid, rank, per_sensor, values, np.clip(z, -1e6, 1e6).astype(np.float32), w)
    g.count += per_sensor
    g.write_back()
    results = []
    lo = 0
    for (scorer, *_), slots, size in zip(items, parts, sizes):
        hi = lo + size
        rows = _Rows(z[lo:hi], floor[lo:hi], chosen[lo:hi], tail_rate[lo:hi], tail_excess[lo:hi],
                     win_v[lo:hi], win_z[lo:hi])
        results.append(scorer._finish(slots, live[lo:hi], rows))  # noqa: SLF001 - same module
        lo = hi
    return results


def _recurrences(c: ScorerConfig, g: _Compact, cid: np.ndarray, rank: np.ndarray, per_sensor: np.ndarray,
                 values, daily_b, weekly_b, ready, live, warm, a_scale, a_level):  # noqa: ANN001, ANN202
    """The rounds: the k-th reading of each sensor, through the recurrences, for every k.

    Compact sensors are numbered by decreasing number of readings in the batch, so round k's sensors
    are a prefix ``[:m_k]`` of the state arrays (views, not gathers); rows are laid out round after
    round in the same order, so each round's inputs and outputs are contiguous slices too.
    """
    n = len(cid)
    by_count = np.argsort(-per_sensor, kind="stable")  # compact id -> position in count order
    position = np.empty_like(by_count)
    position[by_count] = np.arange(len(by_count))
    pos_of_row = position[cid]
    flat = np.lexsort((pos_of_row, rank))  # round-major, then count order
    g.reorder(by_count)
    per_round = np.bincount(rank)
    bounds = np.r_[0, np.cumsum(per_round)]
    x_f, db_f, wb_f = values[flat], daily_b[flat], weekly_b[flat]
    ready_f, live_f, warm_f = ready[flat], live[flat], warm[flat]
    as_f, al_f = a_scale[flat][:, None], a_level[flat]
    z_f, floor_f, chosen_f, tr_f, te_f = (np.empty(n) for _ in range(5))
    level, scale, daily, weekly = g.level, g.scale, g.daily, g.weekly
    tail_rate, tail_excess = g.tail_rate, g.tail_excess
    arange = np.arange(len(per_sensor))
    scale_floor, winsor, season_alpha = c.scale_floor, c.winsor, c.season_alpha
    rate_alpha, excess_alpha = c.tail_rate_alpha, c.tail_excess_alpha
    for k in range(len(per_round)):
        a, b = bounds[k], bounds[k + 1]
        m = b - a
        ar = arange[:m]
        x, db, wb = x_f[a:b], db_f[a:b], wb_f[a:b]
        lvl = level[:m]
        pd = daily[ar, db].astype(np.float64)
        pw = weekly[ar, wb].astype(np.float64)
        no_d, no_w = np.isnan(pd), np.isnan(pw)
        pred = np.empty((m, 3))
        pred[:, 0] = lvl
        pred[:, 1] = np.where(no_d, lvl, pd)
        pred[:, 2] = np.where(no_w, lvl, pw)
        resid = x[:, None] - pred
        floor = scale_floor * np.abs(lvl) + 1e-12
        sc = scale[:m]
        scales = np.maximum(sc * _MEAN_ABS_TO_SD, floor[:, None])
        pick = np.argmin(np.where(ready_f[a:b], scales, np.inf), axis=1)
        chosen = scales[ar, pick]
        z = resid[ar, pick] / chosen
        z_f[a:b] = z
        floor_f[a:b] = floor
        chosen_f[a:b] = chosen
        # learn: fast running means while warming up, robust EWMAs afterwards
        absr = np.abs(resid)
        absr = np.where(warm_f[a:b, None], absr, np.minimum(absr, winsor * scales))
        scale[:m] = sc + as_f[a:b] * (absr - sc)
        level[:m] = lvl + al_f[a:b] * (x - lvl)
        daily[ar, db] = np.where(no_d, x, pd + season_alpha * (x - pd))
        weekly[ar, wb] = np.where(no_w, x, pw + season_alpha * (x - pw))
        # the sensor's own tail: how often |z| exceeds TAIL_U and by how much (after warm-up); the
        # surprise of this reading is judged against the tail as it was before it
        tr, te = tail_rate[:m], tail_excess[:m]
        tr_f[a:b] = tr
        te_f[a:b] = te
        over = np.abs(z) - TAIL_U
        lv = live_f[a:b]
        hit = lv & (over > 0)
        tail_rate[:m] = tr + np.where(lv, rate_alpha * (hit - tr), 0.0)
        tail_excess[:m] = te + np.where(hit, excess_alpha * (np.minimum(over, 10.0) - te), 0.0)
    g.reorder(np.argsort(by_count, kind="stable"))  # back to compact ids
    back = np.empty(n, np.int64)
    back[flat] = np.arange(n)
    return z_f[back], floor_f[back], chosen_f[back], tr_f[back], te_f[back]


class _Compact:
    """The state of a batch's sensors gathered from their scorers' tables into arrays of its own."""

    _GATHERED = ("count", "first_t", "level", "scale", "daily", "weekly", "tail_rate", "tail_excess")
    _REORDERED = ("level", "scale", "daily", "weekly", "tail_rate", "tail_excess")

    def __init__(self, tables: list[SensorTable], uniq_of: list[np.ndarray]) -> None:
        self._tables, self._uniq = tables, uniq_of
        for name in self._GATHERED:
            setattr(self, name, np.concatenate([getattr(t, name)[u] for t, u in zip(tables, uniq_of)]))
        self._values = np.concatenate([t.values[u] for t, u in zip(tables, uniq_of)])
        self._zs = np.concatenate([t.zs[u] for t, u in zip(tables, uniq_of)])
        self._pos = np.concatenate([t.pos[u] for t, u in zip(tables, uniq_of)])

    def reorder(self, perm: np.ndarray) -> None:
        for name in self._REORDERED:
            setattr(self, name, getattr(self, name)[perm])

    def windows(self, cid: np.ndarray, rank: np.ndarray, per_sensor: np.ndarray, values: np.ndarray,
                zs: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's ring buffers of raw values and z (slot order, as the table holds them after
        writing that row), and the rings' state after the batch (the last row's, per sensor)."""
        n, m = len(cid), len(per_sensor)
        # per sensor: its ring's w values oldest first, then its batch values in order
        seg = np.r_[0, np.cumsum(per_sensor + w)[:-1]]
        oldest = (self._pos[:, None] + np.arange(w)) % w  # slot of the j-th oldest value
        ext_v = np.empty(n + m * w)
        ext_z = np.empty(n + m * w, np.float32)
        old_at = (seg[:, None] + np.arange(w)).ravel()
        ext_v[old_at] = np.take_along_axis(self._values, oldest, axis=1).ravel()
        ext_z[old_at] = np.take_along_axis(self._zs, oldest, axis=1).ravel()
        new_at = seg[cid] + w + rank
        ext_v[new_at] = values
        ext_z[new_at] = zs
        # slot j after writing the row of rank k (written at slot p = (pos + k) % w) holds the value
        # written (p - j) % w readings earlier
        p = (self._pos[cid] + rank) % w
        back = (p[:, None] - np.arange(w)) % w
        at = new_at[:, None] - back
        win_v, win_z = ext_v[at], ext_z[at]
        order = np.argsort(cid, kind="stable")
        last = order[np.cumsum(per_sensor) - 1]  # each sensor's last row of the batch
        self._values = win_v[last]
        self._zs = win_z[last]
        self._pos = (self._pos + per_sensor) % w
        return win_v, win_z

    def write_back(self) -> None:
        lo = 0
        for t, u in zip(self._tables, self._uniq):
            hi = lo + len(u)
            for name in self._GATHERED:
                getattr(t, name)[u] = getattr(self, name)[lo:hi]
            t.values[u] = self._values[lo:hi]
            t.zs[u] = self._zs[lo:hi]
            t.pos[u] = self._pos[lo:hi]
            lo = hi


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
