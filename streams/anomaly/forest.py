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
                raw = -self._model.score_samples(seg)  # the paper's s = 2^(-E h / c): higher = rarer
                out[i:j] = self._tail_surprise(raw)
            self._append(seg)
            self._since_fit += j - i
            if self._rows_to_next_fit() <= 0:
                self._fit()
            i = j
        return out

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
        model = IsolationForest(
            n_estimators=self._c.trees,
            max_samples=min(self._c.max_samples, len(data)),
            random_state=self._c.seed + self._fits,
        )
        model.fit(data)
        raw = -model.score_samples(data)
        # Peaks over threshold: above the training window's (1 - TAIL) quantile, excesses are
        # modelled as exponential (the shape-0 generalised Pareto), so rarer-than-seen scores
        # get probabilities below 1/len(data) instead of being capped there.
        self._u = float(np.quantile(raw, 1.0 - _TAIL))
        excess = raw[raw > self._u] - self._u
        self._beta = float(excess.mean()) if len(excess) else 1e-6
        self._beta = max(self._beta, 1e-6)
        self._model = model
        self._fits += 1
        self._since_fit = 0
