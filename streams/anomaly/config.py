"""The scorer's knobs. Defaults are general (not fitted to any data set); docs/anomaly.md says why."""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAME = "robust-seasonal+iforest"
MODEL_VERSION = "1"


@dataclass(frozen=True, slots=True)
class ScorerConfig:
    #: readings per sensor before its scores count (score 0, never anomalous, while warming up)
    warmup: int = 128
    #: EWMA weight of the local level (half-life ~6.6 readings: follows the recent value)
    level_alpha: float = 0.1
    #: EWMA weight of each model's residual scale (half-life ~34 readings: a stable yardstick)
    scale_alpha: float = 0.02
    #: EWMA weight of a seasonal bucket, per visit
    season_alpha: float = 0.1
    #: time-of-day buckets (288 = 5 min) and hour-of-week buckets (168 = 1 h)
    daily_buckets: int = 288
    weekly_buckets: int = 168
    #: residuals beyond this many scales update the scale as if they were this big (robustness)
    winsor: float = 4.0
    #: relative floor of the scale (a perfectly flat signal must not make every wiggle infinite)
    scale_floor: float = 1e-3
    #: EWMA weights of the per-sensor tail model: rate of |z| > 2 per reading, mean excess per exceedance
    tail_rate_alpha: float = 0.005
    tail_excess_alpha: float = 0.05
    #: score = surprise / surprise_max, surprise = -log10(tail probability), clipped to [0, 1]
    surprise_max: float = 8.0
    #: raise at score >= raise_at (p <= 1e-4), clear after clear_after readings below clear_at (p > 1e-2)
    raise_at: float = 0.5
    clear_at: float = 0.25
    clear_after: int = 12
    #: short window (ring buffer) of raw values and z scores per sensor, for the model's features
    window: int = 8
    #: the shared IsolationForest: trained on the last `train_rows` feature rows; refit when the rows
    #: seen have doubled since the last fit, at most `refit_every` rows apart
    train_rows: int = 4096
    refit_every: int = 16384
    min_train_rows: int = 512
    trees: int = 50
    max_samples: int = 256
    seed: int = 7
