"""``IsolationForest(...).fit(X)``, the same model, with fewer Python-level calls.

scikit-learn's fit spends most of its ~100 ms (50 trees of 256 samples, this machine) outside the
tree builder: every tree builds three ``numpy.random.RandomState`` objects from integer seeds
(~250 us each here: a fresh MT19937 first draws OS entropy and hashes it, then the legacy seeding
overwrites all of it), clones the template tree through ``inspect.signature``, and validates its
parameters and sample weights again. :func:`fit_isolation_forest` runs the same steps in the same
order with the same random draws (one ``RandomState`` reseeded with ``seed()``, which sets exactly
the state a new ``RandomState(seed)`` has), builds each tree with its own ``_fit``, computes the
(elementwise) average path lengths of all trees' nodes in one call, and sets the same fitted
attributes.

It reproduces the private control flow of scikit-learn's ``IsolationForest.fit``,
``BaseBagging._fit`` and ``_parallel_build_estimators`` (checked against scikit-learn 1.9), so it
is verified, not trusted: :func:`fast_fit_is_exact` fits a fixed data set both ways once per
process and compares the pickled models byte for byte; when they differ (another scikit-learn),
:func:`fit` uses ``IsolationForest.fit`` itself. ``tests/streams/anomaly/test_iforest_fit.py``
compares both ways over several data sets, sizes and seeds.
"""

from __future__ import annotations

import functools
import pickle

import numpy as np
import structlog
from sklearn.ensemble import IsolationForest

log = structlog.get_logger(__name__)

_MAX_INT = np.iinfo(np.int32).max


def fit(data: np.ndarray, *, n_estimators: int, max_samples: int, random_state: int) -> IsolationForest:
    """A fitted ``IsolationForest(n_estimators, max_samples, random_state)`` on ``data``."""
    if fast_fit_is_exact():
        return fit_isolation_forest(data, n_estimators=n_estimators, max_samples=max_samples,
                                    random_state=random_state)
    return IsolationForest(n_estimators=n_estimators, max_samples=max_samples, random_state=random_state).fit(data)


def fit_isolation_forest(data: np.ndarray, *, n_estimators: int, max_samples: int,
                         random_state: int) -> IsolationForest:
    """The fast path (dense finite float data, an integer ``max_samples`` <= its rows, no weights)."""
    from sklearn.ensemble._iforest import _average_path_length
    from sklearn.utils.random import sample_without_replacement

    model = IsolationForest(n_estimators=n_estimators, max_samples=max_samples, random_state=random_state)
    # IsolationForest.fit
    x = np.asarray(data, dtype=np.float32)
    n_samples, n_features = x.shape
    if not 1 <= max_samples <= n_samples:
        raise ValueError(f"max_samples={max_samples} needs 1..{n_samples} rows")
    model.n_features_in_ = n_features
    rs = np.random.RandomState(random_state)
    y = rs.uniform(size=n_samples)
    model.max_samples_ = max_samples
    max_depth = int(np.ceil(np.log2(max(max_samples, 2))))
    # BaseBagging._fit
    rs.seed(random_state)
    model._n_samples = n_samples
    model.estimator_ = model._get_estimator()
    model.estimator_.max_depth = max_depth
    model._max_samples = max_samples
    max_features = max(1, int(int(model.max_features * n_features)))
    model._max_features = max_features
    model._sample_weight = None
    model.estimators_ = []
    model.estimators_features_ = []
    seeds = rs.randint(_MAX_INT, size=n_estimators)
    model._seeds = seeds
    # _parallel_build_estimators, one job
    template = type(model.estimator_)
    params = model.estimator_.get_params(deep=False)
    tree_rs = np.random.RandomState(0)
    estimators, features_of = [], []
    for seed in seeds:
        tree = template(**params)  # clone(estimator_) (no nested estimators to clone)
        rs.seed(seed)  # _set_random_states: the tree's only random_state parameter
        tree_seed = rs.randint(_MAX_INT)
        rs.seed(seed)  # _generate_bagging_indices
        features = sample_without_replacement(n_features, max_features, random_state=rs)
        indices = sample_without_replacement(n_samples, max_samples, random_state=rs)
        # DecisionTreeRegressor.fit(x, y, sample_weight=bincount, check_input=False), its RandomState reseeded
        tree_rs.seed(tree_seed)
        tree.random_state = tree_rs
        tree._fit(x, y, sample_weight=np.bincount(indices, minlength=n_samples), check_input=False)
        tree.random_state = tree_seed
        estimators.append(tree)
        features_of.append(features)
    model.estimators_ += estimators
    model.estimators_features_ += features_of
    # _average_path_length per tree, in one call over all trees' nodes (it is elementwise)
    counts = [t.tree_.n_node_samples for t in model.estimators_]
    cuts = np.cumsum([len(c) for c in counts])[:-1]
    model._average_path_length_per_tree = tuple(a.copy() for a in np.split(_average_path_length(np.concatenate(counts)),
                                                                           cuts))
    model._decision_path_lengths = tuple(t.tree_.compute_node_depths() for t in model.estimators_)
    model.offset_ = -0.5  # contamination "auto"
    return model


@functools.cache
def fast_fit_is_exact() -> bool:
    """Whether :func:`fit_isolation_forest` gives this scikit-learn's model, byte for byte (checked once)."""
    rng = np.random.default_rng(20261202)
    data = rng.normal(size=(700, 3)) * np.array([1.0, 3.0, 0.1])
    data[::50] += 9.0
    try:
        ours = fit_isolation_forest(data, n_estimators=12, max_samples=256, random_state=11)
    except Exception as e:  # noqa: BLE001 - any change of the internals means: use the real fit
        log.warning("iforest.fast_fit_unavailable", error=repr(e))
        return False
    theirs = IsolationForest(n_estimators=12, max_samples=256, random_state=11).fit(data)
    same = same_model(ours, theirs)
    if not same:
        log.warning("iforest.fast_fit_differs", reason="this scikit-learn fits differently; using IsolationForest.fit")
    return same


def same_model(a: IsolationForest, b: IsolationForest) -> bool:
    """Equal fitted state: the same attributes, trees and depth terms (pickles compared byte for byte)."""
    return pickle.dumps(a, protocol=pickle.HIGHEST_PROTOCOL) == pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)
