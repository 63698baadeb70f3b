"""The bridge's counters: logged periodically, served as Prometheus text on /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCIES = (0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02, 0.025, 0.03, 0.04,
              0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class BridgeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    received: int = 0       # MQTT messages handed to the bridge
    produced: int = 0       # events Kafka acknowledged (readings)
    dead_lettered: int = 0  # messages that went to the dead-letter topic
    acked: int = 0          # MQTT messages acknowledged to the broker
    in_flight: int = 0      # received, not yet acknowledged
    retries: int = 0        # failed Kafka productions retried
    connected: bool = False

    def __post_init__(self) -> None:
        r, w = self.registry, ("worker",)
        self._received = Counter("qi_bridge_received", "MQTT messages received", w, registry=r)
        self._produced = Counter("qi_bridge_produced", "events acknowledged by Kafka", w, registry=r)
        self._dead = Counter("qi_bridge_dead_lettered", "messages sent to the dead-letter topic", w, registry=r)
        self._acked = Counter("qi_bridge_acked", "MQTT messages acknowledged to the broker", w, registry=r)
        self._retries = Counter("qi_bridge_retries", "Kafka productions retried", w, registry=r)
        self._in_flight = Gauge("qi_bridge_in_flight", "messages received and not yet acknowledged", w,
                                registry=r)
        self._latency = Histogram("qi_bridge_latency_seconds", "MQTT receipt to Kafka acknowledgement", w,
                                  buckets=_LATENCIES, registry=r)
        self._source_to_ack = Histogram(
            "qi_bridge_source_to_ack_seconds",
            "gateway timestamp in the payload to Kafka acknowledgement (includes gateway clock skew)", w,
            buckets=_LATENCIES, registry=r)
        self._w = "bridge"

    def count_received(self, n: int = 1) -> None:
        self.received += n
        self.in_flight += n
        self._received.labels(self._w).inc(n)
        self._in_flight.labels(self._w).set(self.in_flight)

    def count_done(self, produced: int, dead: int, acked: int, released: int) -> None:
        self.produced += produced
        self.dead_lettered += dead
        self.acked += acked
        self.in_flight -= released
        self._produced.labels(self._w).inc(produced)
        self._dead.labels(self._w).inc(dead)
        self._acked.labels(self._w).inc(acked)
        self._in_flight.labels(self._w).set(self.in_flight)

    def count_retry(self) -> None:
        self.retries += 1
        self._retries.labels(self._w).inc()

    def observe_latency(self, seconds: float) -> None:
        self._latency.labels(self._w).observe(seconds)

    def observe_source_to_ack(self, seconds: float) -> None:
        self._source_to_ack.labels(self._w).observe(seconds)

    def snapshot(self) -> dict[str, object]:
        return {"received": self.received, "produced": self.produced, "dead_lettered": self.dead_lettered,
                "acked": self.acked, "in_flight": self.in_flight, "retries": self.retries,
                "connected": self.connected}
