"""Anomaly scoring: a robust seasonal baseline per sensor plus a shared IsolationForest.

:class:`~streams.anomaly.scorer.Scorer` is pure logic (numpy + scikit-learn): the worker
(:mod:`streams.anomaly.processor`) and the offline backtest (:mod:`streams.anomaly.backtest`)
run the same class. See ``docs/anomaly.md`` for the method and why its defaults are what they are.
"""

from streams.anomaly.config import ScorerConfig
from streams.anomaly.scorer import ALERT_CLEARED, ALERT_NONE, ALERT_RAISED, BatchScores, Scorer

__all__ = ["ALERT_CLEARED", "ALERT_NONE", "ALERT_RAISED", "BatchScores", "Scorer", "ScorerConfig"]
