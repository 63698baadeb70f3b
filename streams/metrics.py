"""Counters a batch runner keeps: for its logs, for tests, and for Prometheus.

Each runner owns a :class:`RunnerMetrics` with its own ``CollectorRegistry``
(no global registry, so several runners in one process, as in tests, never
collide). Plain counters back :meth:`snapshot` for logs and tests; the
Prometheus series are updated alongside and served on ``/metrics``.
"""

from __future__ import annotations

from collections import Counter as _Counter
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_SIZES = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10000)
_LATENCIES = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class RunnerMetrics:
    worker: str = "worker"
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    consumed: _Counter[str] = field(default_factory=_Counter)        # per input topic
    produced: _Counter[str] = field(default_factory=_Counter)        # per output topic
    dead_lettered: _Counter[str] = field(default_factory=_Counter)   # per input topic
    batches: int = 0
    retries: int = 0
    last_batch_size: int = 0
    batch_seconds_total: float = 0.0
    batch_seconds_max: float = 0.0
    #: (topic, partition) -> records between the consumer's position and the log end
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    #: (topic, partition) -> the log end (high watermark) of the last fetch answer the lag was taken
    #: against: a reader of /health can tell "caught up with *this* log end" from "caught up with
    #: an older one" (records appended after that fetch are not in the lag yet)
    seen_ends: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r, w = self.registry, ("worker",)
        self._consumed = Counter("qi_events_consumed", "records consumed", [*w, "topic"], registry=r)
        self._produced = Counter("qi_events_produced", "records produced (outputs and dead letters)",
                                 [*w, "topic"], registry=r)
        self._dead = Counter("qi_events_dead_lettered", "records sent to the dead-letter topic",
                             [*w, "topic"], registry=r)
        self._retries = Counter("qi_retries", "retries after transient failures", [*w, "operation"], registry=r)
        self._batch_size = Histogram("qi_batch_size", "records per batch", w, buckets=_BATCH_SIZES, registry=r)
        self._batch_latency = Histogram("qi_batch_seconds", "fetch-to-commit time of a batch", w,
                                        buckets=_LATENCIES, registry=r)
        self._lag = Gauge("qi_consumer_lag", "records behind the log end", [*w, "topic", "partition"], registry=r)
        self._age = Gauge("qi_record_age_seconds",
                          "wall clock minus the log append time of the newest record of the last committed batch "
                          "(for a projector: its projection lag)", w, registry=r)

    def count_consumed(self, topic: str, n: int) -> None:
        self.consumed[topic] += n
        self._consumed.labels(self.worker, topic).inc(n)

    def count_produced(self, topic: str, n: int = 1) -> None:
        self.produced[topic] += n
        self._produced.labels(self.worker, topic).inc(n)

    def count_dead(self, topic: str, n: int = 1) -> None:
        self.dead_lettered[topic] += n
        self._dead.labels(self.worker, topic).inc(n)

    def count_retry(self, operation: str) -> None:
        self.retries += 1
        self._retries.labels(self.worker, operation).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.last_batch_size = size
        self.batch_seconds_total += seconds
        self.batch_seconds_max = max(self.batch_seconds_max, seconds)
        self._batch_size.labels(self.worker).observe(size)
        self._batch_latency.labels(self.worker).observe(seconds)

    def set_record_age(self, seconds: float) -> None:
        self._age.labels(self.worker).set(max(seconds, 0.0))

    def set_lag(self, topic: str, partition: int, lag: int, *, end: int | None = None) -> None:
        self.lag[(topic, partition)] = lag
        if end is not None:
            self.seen_ends[(topic, partition)] = end
        self._lag.labels(self.worker, topic, str(partition)).set(lag)

    def forget_partitions(self, tps: list[tuple[str, int]]) -> None:
        for topic, partition in tps:
            self.seen_ends.pop((topic, partition), None)
            if self.lag.pop((topic, partition), None) is not None:
                self._lag.remove(self.worker, topic, str(partition))

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

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

    def ends_seen(self) -> dict[str, int]:
        """``{"topic/partition": log end}`` of the last fetch answers, for /health."""
        return {f"{t}/{p}": n for (t, p), n in sorted(self.seen_ends.items())}
