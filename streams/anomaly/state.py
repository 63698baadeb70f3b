"""Per-sensor state as a structure of arrays: a fixed number of numbers per sensor.

Each sensor owns one row in every array (its slot); rows are allocated on first sight and
the arrays grow by doubling. Per sensor that is ~1 KB (level, 3 scales, 48 daily + 168 weekly
bucket means in float32, two ring buffers of ``window`` values, alert state), whatever the
number of readings: memory grows with the number of distinct sensors only.
"""

from __future__ import annotations

import numpy as np

from streams.anomaly.config import ScorerConfig

N_MODELS = 3  # local level, time-of-day profile, hour-of-week profile
TAIL_U = 2.0  # |z| beyond which the tail is modelled
GAUSS_RATE = 0.0455  # P(|z| > 2) for a Gaussian: the prior of the tail model
GAUSS_EXCESS = 0.373  # E(|z| - 2 | |z| > 2) for a Gaussian
FIELDS = ("count", "first_t", "level", "scale", "daily", "weekly", "values", "zs", "pos", "active", "calm",
          "tail_rate", "tail_excess")


class SensorTable:
    def __init__(self, config: ScorerConfig, capacity: int = 64) -> None:
        self._c = config
        self.slots: dict[str, int] = {}
        self._alloc(capacity)

    def _alloc(self, cap: int) -> None:
        c = self._c
        self.count = np.zeros(cap, np.int64)
        self.first_t = np.zeros(cap, np.float64)
        self.level = np.zeros(cap, np.float64)
        self.scale = np.zeros((cap, N_MODELS), np.float64)
        self.daily = np.full((cap, c.daily_buckets), np.nan, np.float32)
        self.weekly = np.full((cap, c.weekly_buckets), np.nan, np.float32)
        self.values = np.zeros((cap, c.window), np.float64)
        self.zs = np.zeros((cap, c.window), np.float32)
        self.pos = np.zeros(cap, np.int64)
        self.active = np.zeros(cap, bool)
        self.calm = np.zeros(cap, np.int64)
        self.tail_rate = np.full(cap, GAUSS_RATE)
        self.tail_excess = np.full(cap, GAUSS_EXCESS)

    @property
    def capacity(self) -> int:
        return len(self.count)

    def __len__(self) -> int:
        return len(self.slots)

    def slots_for(self, keys: list[str]) -> np.ndarray:
        """The slot of each key, allocating new sensors (and growing the arrays) as needed."""
        slots = self.slots
        out = np.empty(len(keys), np.int64)
        for i, k in enumerate(keys):
            s = slots.get(k)
            if s is None:
                s = slots[k] = len(slots)
            out[i] = s
        if len(slots) > self.capacity:
            self._grow(len(slots))
        return out

    def _grow(self, need: int) -> None:
        cap = self.capacity
        while cap < need:
            cap *= 2
        old = {name: getattr(self, name) for name in
               FIELDS}
        self._alloc(cap)
        for name, arr in old.items():
            getattr(self, name)[: len(arr)] = arr

    def nbytes(self) -> int:
        return sum(getattr(self, n).nbytes for n in FIELDS)
