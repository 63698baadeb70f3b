"""The shared forest's fast fit is scikit-learn's IsolationForest.fit, byte for byte."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from streams.anomaly import iforest_fit


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(n, 3)) * np.array([1.0, 0.2, 5.0])
    x[rng.choice(n, n // 40, replace=False)] += 12.0
    x[: n // 10, 1] = 0.5  # a flat stretch: ties in one feature
    return x


@pytest.mark.parametrize(("rows", "max_samples", "seed"), [(512, 256, 7), (1024, 256, 8), (4096, 256, 12),
                                                           (300, 300, 3), (700, 64, 99)])
def test_the_fast_fit_gives_the_model_isolation_forest_fit_gives(rows, max_samples, seed):
    x = _data(rows, seed)
    ours = iforest_fit.fit_isolation_forest(x, n_estimators=50, max_samples=max_samples, random_state=seed)
    theirs = IsolationForest(n_estimators=50, max_samples=max_samples, random_state=seed).fit(x)
    assert pickle.dumps(ours) == pickle.dumps(theirs)
    probe = _data(2000, seed + 1)
    assert np.array_equal(ours.score_samples(probe), theirs.score_samples(probe))


def test_the_self_check_passes_on_this_scikit_learn_and_fit_takes_the_fast_path(monkeypatch):
    assert iforest_fit.fast_fit_is_exact()
    called = []
    real = iforest_fit.fit_isolation_forest
    monkeypatch.setattr(iforest_fit, "fit_isolation_forest", lambda *a, **k: called.append(1) or real(*a, **k))
    iforest_fit.fit(_data(600, 1), n_estimators=5, max_samples=256, random_state=1)
    assert called


def test_a_different_model_is_told_apart():
    x = _data(800, 4)
    a = iforest_fit.fit_isolation_forest(x, n_estimators=10, max_samples=256, random_state=1)
    b = IsolationForest(n_estimators=10, max_samples=256, random_state=2).fit(x)
    assert not iforest_fit.same_model(a, b)
