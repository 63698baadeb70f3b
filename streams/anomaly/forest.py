"""One IsolationForest shared by every sensor of a scorer, over sensor-normalised features.

Features are already divided by each sensor's own baseline scale, so one model serves all
sensors (memory does not grow with the number of sensors). It is refit on a sliding window
of the last ``train_rows`` feature rows: first after ``min_train_rows`` rows, then each time
the number of rows seen has doubled (early models improve fast), then every ``refit_every`` rows
(refits cost ~45 ms: at steady state that is ~3 us per row). Refits happen at fixed
row counts, not at batch boundaries, so the scores do not depend on how input was batched.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from streams.anomaly import iforest_fit
from streams.anomaly.config import ScorerConfig

_TAIL = 0.05


class SharedForest:
    def __init__(self, config: ScorerConfig, n_features: int) -> None:
        self._c = config
        self._rows = np.zeros((config.train_rows, n_features), dtype=np.float64)
        self._filled = 0        # rows ever appended
        self._since_fit = 0
        self._fits = 0
        self._model: IsolationForest | None = None
        self._u = 0.0
        self._beta = 1.0
        self._terms: list[tuple[object, np.ndarray]] | None = None
        self._denominator: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self._model is not None

    def surprise(self, features: np.ndarray) -> np.ndarray:
        """Score rows in order, appending them to the training window and refitting on schedule."""
        n = len(features)
        out = np.zeros(n)
        i = 0
        while i < n:
            j = min(n, i + self._rows_to_next_fit())
            seg = features[i:j]
            if self._model is not None:
                raw = self._scores(seg)  # the paper's s = 2^(-E h / c): higher = rarer
                out[i:j] = self._tail_surprise(raw)
            self._append(seg)
            self._since_fit += j - i
            if self._rows_to_next_fit() <= 0:
                self._fit()
            i = j
        return out

    def __getstate__(self) -> dict:
        # snapshots carry the model, not the arrays derived from it (rebuilt on first use)
        return {**self.__dict__, "_terms": None, "_denominator": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"_terms": None, "_denominator": None, **state})

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """``-model.score_samples(rows)``, exactly, without scikit-learn's per-call overhead.

        ``score_samples`` validates its input and runs one joblib task per tree (~0.3 ms per tree
        per call on this machine, 15 ms for 50 trees: more than all the other scoring together).
        This is the same computation (float32 features, each tree's leaves, depth terms summed in
        tree order, 2^(-mean depth / c)) with the trees' arrays taken once per fit; a unit test
        checks it equals ``-score_samples`` bit for bit. Without those internals (another
        scikit-learn), it is ``score_samples`` itself.
        """
        if self._terms is None:
            self._terms, self._denominator = _tree_terms(self._model)
            if self._terms is None:
                return -self._model.score_samples(rows)
        x = np.ascontiguousarray(rows, dtype=np.float32)
        depths = np.zeros(len(x), order="f")
        for tree, term in self._terms:
            depths += term[tree.apply(x)]
        return 2 ** (-np.divide(depths, self._denominator, out=np.ones_like(depths),
                                where=self._denominator != 0))

    def _tail_surprise(self, raw: np.ndarray) -> np.ndarray:
        """-log10 P(score >= raw) under the fitted tail; 0 below the tail's threshold."""
        excess = np.maximum(raw - self._u, 0.0)
        return np.where(raw > self._u, -np.log10(_TAIL) + excess / (self._beta * np.log(10.0)), 0.0)

    def _rows_to_next_fit(self) -> int:
        """Fits at min_train_rows, then each time the rows seen double, then every refit_every rows."""
        if self._model is None:
            return max(self._c.min_train_rows - self._filled, 0)
        return min(self._filled, self._c.refit_every) - self._since_fit

    def _append(self, seg: np.ndarray) -> None:
        cap = self._c.train_rows
        for row_block in np.array_split(seg, max(1, int(np.ceil(len(seg) / cap)))):
            k = len(row_block)
            start = self._filled % cap
            end = start + k
            if end <= cap:
                self._rows[start:end] = row_block
            else:
                first = cap - start
                self._rows[start:] = row_block[:first]
                self._rows[: k - first] = row_block[first:]
            self._filled += k

    def _fit(self) -> None:
        data = self._rows[: min(self._filled, self._c.train_rows)]
        # IsolationForest(n_estimators, max_samples, random_state).fit(data), the same model faster
        model = iforest_fit.fit(data, n_estimators=self._c.trees, max_samples=min(self._c.max_samples, len(data)),
                                random_state=self._c.seed + self._fits)
        self._model = model
        self._terms, self._denominator = _tree_terms(model)
        raw = self._scores(data)
        # Peaks over threshold: above the training window's (1 - TAIL) quantile, excesses are
        # modelled as exponential (the shape-0 generalised Pareto), so rarer-than-seen scores
        # get probabilities below 1/len(data) instead of being capped there.
        self._u = float(np.quantile(raw, 1.0 - _TAIL))
        excess = raw[raw > self._u] - self._u
        self._beta = float(excess.mean()) if len(excess) else 1e-6
        self._beta = max(self._beta, 1e-6)
        self._fits += 1
        self._since_fit = 0


def _tree_terms(model: IsolationForest) -> tuple[list[tuple[object, np.ndarray]] | None, np.ndarray | None]:
    """Per tree, its low-level tree and the depth term of every node (decision path length plus
    the average path length of the node's samples, minus 1, as scikit-learn sums them); and the
    normalising denominator. (None, None) when this scikit-learn does not have these internals."""
    try:
        from sklearn.ensemble._iforest import _average_path_length

        if model._max_features != model.n_features_in_:
            return None, None
        terms = [(est.tree_, dpl + apl - 1.0) for est, dpl, apl in
                 zip(model.estimators_, model._decision_path_lengths, model._average_path_length_per_tree)]
        denominator = len(model.estimators_) * _average_path_length([model._max_samples])
    except (AttributeError, ImportError):
        return None, None
    return terms, denominator
