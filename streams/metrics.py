"""Counters a batch runner keeps, for logs now and a metrics endpoint later.

Plain attributes updated on the runner's own task: no locks, no globals. A
metrics exporter reads :meth:`RunnerMetrics.snapshot`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RunnerMetrics:
    consumed: Counter[str] = field(default_factory=Counter)        # per input topic
    produced: Counter[str] = field(default_factory=Counter)        # per output topic
    dead_lettered: Counter[str] = field(default_factory=Counter)   # per input topic
    batches: int = 0
    retries: int = 0
    last_batch_size: int = 0
    batch_seconds_total: float = 0.0
    batch_seconds_max: float = 0.0
    #: input topic-partition -> (position committed, log end seen at last fetch)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.last_batch_size = size
        self.batch_seconds_total += seconds
        self.batch_seconds_max = max(self.batch_seconds_max, seconds)

    def snapshot(self) -> dict[str, object]:
        return {
            "consumed": dict(self.consumed),
            "produced": dict(self.produced),
            "dead_lettered": dict(self.dead_lettered),
            "batches": self.batches,
            "retries": self.retries,
            "batch_seconds_avg": self.batch_seconds_total / self.batches if self.batches else 0.0,
            "batch_seconds_max": self.batch_seconds_max,
            "lag": {f"{t}/{p}": n for (t, p), n in sorted(self.lag.items())},
        }
