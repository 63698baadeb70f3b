"""The scorer as pure logic: alerts per episode, batch invariance, bounded state, snapshots."""

from __future__ import annotations

import pickle

import numpy as np

from streams.anomaly import ALERT_CLEARED, ALERT_RAISED, Scorer, ScorerConfig

DAY = 86_400.0


def seasonal(n: int, seed: int, step_s: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = 1.7e9 + np.arange(n) * step_s
    return t, 20 + 5 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 0.5, n)


def test_a_spike_raises_exactly_one_alert_at_the_spike_and_clears_it():
    t, v = seasonal(3000, 1)
    v[2000] += 8
    r = Scorer().score_batch(["s"] * len(v), t, v)
    assert np.flatnonzero(r.alert == ALERT_RAISED).tolist() == [2000]
    cleared = np.flatnonzero(r.alert == ALERT_CLEARED)
    assert len(cleared) == 1 and 2000 < cleared[0] < 2100
    assert r.is_anomaly[2000] and not r.is_anomaly[cleared[0]]
    assert ((r.score >= 0) & (r.score <= 1)).all()


def test_a_level_shift_raises_exactly_one_alert_for_the_episode():
    t, v = seasonal(3000, 2)
    v[2000:] += 6
    r = Scorer().score_batch(["s"] * len(v), t, v)
    assert np.flatnonzero(r.alert == ALERT_RAISED).tolist() == [2000]


def test_no_scores_count_during_warm_up():
    t, v = seasonal(500, 3)
    v[50] += 100
    r = Scorer(ScorerConfig(warmup=128)).score_batch(["s"] * 500, t, v)
    assert (r.score[:128] == 0).all() and not r.is_anomaly[:128].any()


def test_results_do_not_depend_on_batching_or_interleaving():
    sensors = 7
    t, v = seasonal(1400 * sensors, 4, step_s=300.0 / sensors)
    keys = [f"k{i % sensors}" for i in range(len(v))]
    v[5000] += 10
    whole = Scorer().score_batch(keys, t, v)
    s = Scorer()
    cuts = np.sort(np.random.default_rng(5).choice(len(v), 40, replace=False))
    parts = [s.score_batch(keys[a:b], t[a:b], v[a:b]) for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(v)])]
    assert np.array_equal(np.concatenate([p.score for p in parts]), whole.score)
    assert np.array_equal(np.concatenate([p.alert for p in parts]), whole.alert)


def test_a_pickled_scorer_continues_exactly_like_the_original():
    t, v = seasonal(3000, 6)
    v[2500] += 9
    a = Scorer()
    a.score_batch(["s"] * 1500, t[:1500], v[:1500])
    b = pickle.loads(pickle.dumps(a))
    ra = a.score_batch(["s"] * 1500, t[1500:], v[1500:])
    rb = b.score_batch(["s"] * 1500, t[1500:], v[1500:])
    assert np.array_equal(ra.score, rb.score) and np.array_equal(ra.alert, rb.alert)


def test_state_per_sensor_is_fixed_size_whatever_the_readings():
    s = Scorer()
    s.score_batch([f"k{i}" for i in range(1000)], np.zeros(1000), np.ones(1000))
    before = s.sensors.nbytes()
    for j in range(20):  # many more readings for the same sensors: no growth
        s.score_batch([f"k{i}" for i in range(1000)], np.full(1000, 60.0 * (j + 1)), np.ones(1000))
    assert s.sensors.nbytes() == before
    per_sensor = before / s.sensors.capacity
    assert per_sensor < 4096


def test_the_forest_scores_exactly_like_scikit_learn_score_samples():
    from sklearn.ensemble import IsolationForest

    from streams.anomaly.forest import SharedForest

    rng = np.random.default_rng(12)
    x = rng.normal(size=(4096, 3))
    x[:40] *= 25
    forest = SharedForest(ScorerConfig(), 3)
    forest._append(x)
    forest._fit()
    model = forest._model
    assert isinstance(model, IsolationForest) and forest._terms is not None  # the fast path is taken
    y = np.r_[rng.normal(size=(2000, 3)) * rng.choice([1.0, 10.0, 1e6], size=(2000, 1)), x]
    assert np.array_equal(forest._scores(y), -model.score_samples(y))
    again = pickle.loads(pickle.dumps(forest))  # a snapshot rebuilds the fast path from the model
    assert np.array_equal(again._scores(y), -model.score_samples(y))
