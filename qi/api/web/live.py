"""The dashboard's live feed: one Kafka reader per app process, fanned out to every SSE client.

One consumer (no group, every partition assigned, starting at the log end) tails the readings,
scores and alerts topics. Each fetch is decoded once (plain: ids stay strings, times int64
micros), readings and scores are coalesced to the latest per sensor of that fetch (a browser
shows the current value; the charts read ranges from the API), every alert is kept, and each item
is serialised to JSON once. Subscribers get the items through a bounded queue of their own that
drops the oldest item when a slow client falls behind, so one stalled browser costs a bounded
amount of memory and never slows the others or the consumer (docs/decisions/0116).

The consumer starts with the first subscriber and runs until :meth:`LiveFeed.close`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from events.errors import DecodeError
from events.reader import log_end_offsets
from events.serde import Serde
from events.topics import TopicNames

log = structlog.get_logger("qi.api.live")

FAMILIES = ("readings", "scores", "alerts")


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """Bounds of the feed; every one is a memory or time bound."""

    queue_size: int = 1000          # items a client may fall behind before its oldest are dropped
    max_clients: int = 200          # concurrent SSE streams per app process
    heartbeat_s: float = 15.0       # an SSE comment this often keeps proxies from closing idle streams
    max_stream_s: float = 60.0      # a stream ends after this; the browser reconnects (bounds shutdown)
    replay_size: int = 2000         # recent items kept so a reconnecting client (Last-Event-ID) misses none
    fetch_timeout_ms: int = 200     # the consumer's longest wait per fetch: the feed's added latency
    max_records: int = 5000         # records per fetch
    retry_s: float = 2.0            # wait before reconnecting after a Kafka error or missing topics


class FeedFull(Exception):
    """``max_clients`` streams are already open."""


class Subscription:
    """One SSE client's view of the feed: a bounded queue of JSON items, oldest dropped first."""

    def __init__(self, size: int, twin: str | None) -> None:
        self.twin = twin
        self.dropped = 0
        self.closed = False
        self.last_seq = 0
        self._items: deque[str] = deque(maxlen=size)
        self._wake = asyncio.Event()

    def offer(self, seq: int, twin: str, item: str) -> None:
        if self.twin is not None and twin != self.twin:
            return
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self.last_seq = seq
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next_batch(self, timeout_s: float) -> list[str] | None:
        """Every queued item (possibly none after ``timeout_s``); ``None`` once the feed closed."""
        if not self._items and not self.closed:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout_s)
            except TimeoutError:
                pass
        self._wake.clear()
        if self.closed:
            return None
        out = list(self._items)
        self._items.clear()
        return out


def items_of(family: str, record: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]] | None:
    """``(twin, coalesce key or None, item)`` for one decoded record; ``None`` if not shown live."""
    event_type = record.get("event_type")
    t_ms = int(record["occurred_at"]) // 1000
    if family == "readings" and event_type == "SensorReading":
        twin, sensor = record["twin_id"], record["sensor_id"]
        return twin, f"r/{twin}/{sensor}", {
            "kind": "reading", "twin": twin, "sensor": sensor, "t": t_ms, "value": record["value"],
            "unit": record["unit"], "quantity": record["quantity"]}
    if family == "scores" and event_type == "AnomalyScored":
        twin, sensor = record["twin_id"], record["sensor_id"]
        return twin, f"s/{twin}/{sensor}", {
            "kind": "score", "twin": twin, "sensor": sensor, "t": t_ms, "value": record["value"],
            "score": record["score"], "is_anomaly": record["is_anomaly"]}
    if family == "alerts" and event_type == "AnomalyDetected":
        twin = record["twin_id"]
        return twin, None, {
            "kind": "alert", "type": event_type, "id": record["event_id"], "twin": twin,
            "sensor": record["sensor_id"], "state": record["state"], "score": record["score"],
            "threshold": record["threshold"], "t": t_ms}
    if family == "alerts" and event_type == "CertificateExpiring":
        twin = record["twin_id"]
        return twin, None, {
            "kind": "alert", "type": event_type, "id": record["event_id"], "twin": twin,
            "certificate": record["certificate_id"], "valid_until": int(record["valid_until"]) // 1000,
            "t": t_ms}
    return None


def _json(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"), allow_nan=False)


class LiveFeed:
    """Tails the live topics once and fans every fetch out to the subscribers."""

    def __init__(self, *, bootstrap: Callable[[], str], serde: Callable[[], Awaitable[Serde]],
                 topics: TopicNames, config: LiveConfig | None = None, client_id: str = "qi-api-live") -> None:
        self._bootstrap = bootstrap
        self._serde_factory = serde
        self._topics = topics
        self.config = config or LiveConfig()
        self._client_id = client_id
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.state = "idle"        # idle -> connecting -> live (-> connecting after an error)
        self.instance = uuid.uuid4().hex[:12]   # event ids are "<instance>:<seq>": resumable on this process only
        self._seq = 0
        self._recent: deque[tuple[int, str, str]] = deque(maxlen=self.config.replay_size)
        self.undecodable = 0
        self.delivered = 0

    @property
    def clients(self) -> int:
        return len(self._subs)

    def subscribe(self, twin: str | None = None, last_event_id: str | None = None) -> Subscription:
        """A new client; with the id of the last event it saw (from this process), it first gets
        the recent items after that one, so a reconnect within ``replay_size`` items loses nothing."""
        if self._closed:
            raise FeedFull("the feed is shutting down")
        if len(self._subs) >= self.config.max_clients:
            raise FeedFull(f"{self.config.max_clients} live streams are open")
        sub = Subscription(self.config.queue_size, twin)
        sub.last_seq = self._seq
        after = self._resume_point(last_event_id)
        if after is not None:
            for seq, item_twin, text in self._recent:
                if seq > after:
                    sub.offer(seq, item_twin, text)
            sub.last_seq = max(sub.last_seq, self._seq)
        self._subs.add(sub)
        if self._task is None:
            self.state = "connecting"
            self._task = asyncio.create_task(self._run(), name="qi-api-live-feed")
        return sub

    def _resume_point(self, last_event_id: str | None) -> int | None:
        if not last_event_id:
            return None
        instance, _, seq = last_event_id.partition(":")
        if instance != self.instance or not seq.isdigit():
            return None
        return int(seq)

    def event_id(self, sub: Subscription) -> str:
        return f"{self.instance}:{sub.last_seq}"

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    async def close(self) -> None:
        """Stop the consumer and end every stream."""
        self._closed = True
        for sub in list(self._subs):
            sub.close()
        self._subs.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.state = "closed"
        log.info("live_feed_closed", delivered=self.delivered, undecodable=self.undecodable)

    def publish(self, family: str, records: list[dict[str, Any]]) -> int:
        """Coalesce one fetch's records of a family and hand them to every subscriber."""
        latest: dict[str, tuple[str, dict[str, Any]]] = {}
        ordered: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            try:
                found = items_of(family, record)
            except (KeyError, TypeError, ValueError):
                self.undecodable += 1
                continue
            if found is None:
                continue
            twin, key, item = found
            if key is None:
                ordered.append((twin, item))
            else:
                latest[key] = (twin, item)
        out = [*latest.values(), *ordered]
        sent = 0
        for twin, item in out:
            try:
                text = _json(item)
            except ValueError:          # a non-finite value on the log: nothing a browser can show
                self.undecodable += 1
                continue
            self._seq += 1
            self._recent.append((self._seq, twin, text))
            for sub in self._subs:
                sub.offer(self._seq, twin, text)
            sent += 1
        self.delivered += sent
        return sent

    async def _run(self) -> None:
        while not self._closed:
            consumer: AIOKafkaConsumer | None = None
            try:
                serde = await self._serde_factory()
                consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap(), client_id=self._client_id,
                                            enable_auto_commit=False, auto_offset_reset="latest")
                await consumer.start()
                names = {self._topics.topic(f): f for f in FAMILIES}
                known = await consumer.topics()
                missing = [t for t in names if t not in known]
                if missing:
                    log.info("live_feed_waiting_for_topics", missing=missing)
                    raise _Retry
                tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
                consumer.assign(tps)
                for tp, end in (await log_end_offsets(consumer, tps)).items():
                    consumer.seek(tp, end)
                self.state = "live"
                log.info("live_feed_started", partitions=len(tps))
                await self._tail(consumer, serde, names)
            except asyncio.CancelledError:
                raise
            except (_Retry, KafkaError, OSError) as e:
                if not isinstance(e, _Retry):
                    log.warning("live_feed_kafka_error", error=str(e))
                self.state = "connecting"
            except Exception as e:  # noqa: BLE001 - the feed never dies: log, wait, start over
                log.error("live_feed_failed", error=f"{type(e).__name__}: {e}")
                self.state = "connecting"
            finally:
                if consumer is not None:
                    await asyncio.shield(consumer.stop())
            await asyncio.sleep(self.config.retry_s)

    async def _tail(self, consumer: AIOKafkaConsumer, serde: Serde, names: dict[str, str]) -> None:
        cfg = self.config
        while True:
            fetched = await consumer.getmany(timeout_ms=cfg.fetch_timeout_ms, max_records=cfg.max_records)
            started = time.perf_counter()
            by_family: dict[str, list[dict[str, Any]]] = {}
            for tp, messages in fetched.items():
                family = names[tp.topic]
                for m in messages:
                    try:
                        decoded = await serde.decode_resolving(m.value or b"", plain=True)
                    except DecodeError:
                        self.undecodable += 1  # poison is the workers' to dead-letter; here it is not shown
                        continue
                    by_family.setdefault(family, []).append(decoded.record)
            for family, records in by_family.items():
                self.publish(family, records)
            if fetched:
                log.debug("live_feed_batch", records=sum(len(v) for v in fetched.values()),
                          clients=len(self._subs), ms=round((time.perf_counter() - started) * 1000, 2))


class _Retry(Exception):
    """Topics missing: wait and try again."""
