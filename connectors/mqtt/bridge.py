"""The MQTT to Kafka bridge service.

Threads: paho's network thread receives messages; the asyncio loop converts,
produces and acknowledges them. The handover between the two is bounded:

* ``on_message`` takes one of ``max_in_flight`` slots before handing a message
  over; when none is free it blocks paho's network thread, so the bridge stops
  reading from the socket and the broker keeps the messages (backpressure
  through TCP, memory bounded by the slots);
* the loop collects a batch (up to ``max_batch``, waiting ``linger_ms``),
  converts it, produces it with one ``Publisher.publish_all`` and, only
  after Kafka acknowledged every record of the batch, sends the MQTT PUBACKs
  (paho manual acks) and frees the slots;
* a failed production is retried, same batch, with backoff, forever: during a
  Kafka outage nothing is acknowledged, the slots fill up, reading stops, and
  the bridge drains when Kafka returns;
* the session is persistent (``clean_session=False``, a stable client id), so
  whatever was not acknowledged when the bridge dies is redelivered to the
  next bridge with that id. Redelivered messages yield the same event ids.

A PUBACK is only valid on the connection that received the message: acks of
messages received before a reconnect are dropped (the broker redelivers them).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import structlog

from connectors.mqtt.convert import Converter
from connectors.mqtt.errors import ConversionError, Reason
from connectors.mqtt.metrics import BridgeMetrics
from events.errors import EncodeError, PublishError
from events.publisher import OutgoingRecord, Publisher
from qi.config import BridgeSettings

log = structlog.get_logger("qi.bridge")


@dataclass(slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which MQTT connection delivered it
    received: float  # time.monotonic()


class MqttBridge:
    """``await run(stop)`` until ``stop`` is set. Built by ``Platform.mqtt_bridge``."""

    def __init__(self, *, url: str, client_id: str, converter: Converter, publisher: Publisher,
                 settings: BridgeSettings, metrics: BridgeMetrics | None = None) -> None:
        self._url = url
        self._client_id = client_id
        self._converter = converter
        self._publisher = publisher
        self._settings = settings
        self.metrics = metrics or BridgeMetrics()
        self._slots = threading.Semaphore(settings.max_in_flight)
        self._generation = 0
        self._closing = False
        self._retrying = False
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Inbound] | None = None
        self._handover: list[Inbound] = []  # paho's thread -> the loop, under the lock
        self._handover_lock = threading.Lock()
        self._wake_pending = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Connect to Kafka (retrying until ``stop``), then to the MQTT broker (paho reconnects)."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        await self._start_publisher(stop or asyncio.Event())
        self._client = self._make_client()
        parts = urlsplit(self._url)
        tls = parts.scheme == "mqtts"
        self._client.connect_async(parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883),
                                   keepalive=self._settings.keepalive_s)
        self._client.loop_start()
        log.info("bridge.started", client_id=self._client_id, broker=f"{parts.hostname}:{parts.port}",
                 subscriptions=self._converter.subscriptions)

    async def _start_publisher(self, stop: asyncio.Event) -> None:
        delay = self._settings.retry_initial_s
        while True:
            try:
                await self._publisher.start()
                break
            except PublishError as e:
                if stop.is_set():
                    raise
                log.warning("bridge.kafka_unavailable", error=str(e), retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self._settings.retry_max_s)
        try:  # metadata now, not on the first message (best effort: publishing fetches it anyway)
            await self._publisher.prepare_topics(self._converter.kafka_topics)
        except PublishError as e:
            log.warning("bridge.kafka_metadata_unavailable", error=str(e))

    def _make_client(self) -> mqtt.Client:
        s = self._settings
        parts = urlsplit(self._url)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id, clean_session=False,
                        protocol=mqtt.MQTTv311, manual_ack=True)
        user = s.username or parts.username
        password = s.password.get_secret_value() if s.password else parts.password
        if user:
            c.username_pw_set(user, password)
        if s.tls or parts.scheme == "mqtts":
            c.tls_set(ca_certs=str(s.tls_ca_file) if s.tls_ca_file else None,
                      certfile=str(s.tls_cert_file) if s.tls_cert_file else None,
                      keyfile=str(s.tls_key_file) if s.tls_key_file else None,
                      cert_reqs=ssl.CERT_REQUIRED)
            c.tls_insecure_set(s.tls_insecure)
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        return c

    async def close(self) -> None:
        """Disconnect (the session stays on the broker) and flush the producer."""
        self._closing = True
        if self._client is not None:
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)
            self._client = None
        await self._publisher.close()
        log.info("bridge.stopped", **self.metrics.snapshot())

    async def run(self, stop: asyncio.Event) -> None:
        await self.start(stop)
        reporter = asyncio.create_task(self._report(stop))
        try:
            await self._pump(stop)
        finally:
            reporter.cancel()
            await self.close()

    def health(self) -> dict[str, object]:
        m = self.metrics
        return {"ready": m.connected and not self._retrying, "connected": m.connected,
                "retrying": self._retrying, **m.snapshot()}

    # ---- paho's thread -----------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.error("bridge.mqtt_refused", reason=str(reason_code))
            return
        self._generation += 1
        client.subscribe([(f, 1) for f in self._converter.subscriptions])
        log.info("bridge.mqtt_connected", session_present=bool(flags.session_present),
                 generation=self._generation)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:  # noqa: ANN001
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("bridge.subscription_refused", reasons=refused)
            return
        self.metrics.connected = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:  # noqa: ANN001
        self.metrics.connected = False
        if not self._closing:
            log.warning("bridge.mqtt_disconnected", reason=str(reason_code))

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        # Blocks paho's network thread while every slot is taken: backpressure.
        while not self._slots.acquire(timeout=0.2):
            if self._closing:
                return  # not acknowledged: the broker redelivers it
        item = Inbound(msg.topic, msg.payload, msg.mid, msg.qos, self._generation, time.monotonic())
        with self._handover_lock:
            self._handover.append(item)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:  # one loop wake-up per burst, not per message
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._accept)

    def _accept(self) -> None:
        with self._handover_lock:
            items, self._handover = self._handover, []
            self._wake_pending = False
        self.metrics.count_received(len(items))
        assert self._queue is not None
        for item in items:
            self._queue.put_nowait(item)

    # ---- the event loop ----------------------------------------------------------------

    async def _pump(self, stop: asyncio.Event) -> None:
        pending: set[asyncio.Task] = set()
        while not stop.is_set():
            batch = await self._next_batch(stop)
            if not batch:
                continue
            while len(pending) >= self._settings.max_pending_batches:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(self._deliver(batch, stop))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=10)

    async def _next_batch(self, stop: asyncio.Event) -> list[Inbound]:
        q = self._queue
        assert q is not None
        try:
            first = await asyncio.wait_for(q.get(), timeout=0.2)
        except TimeoutError:
            return []
        batch = [first]
        limit = self._settings.max_batch
        while len(batch) < limit and not q.empty():
            batch.append(q.get_nowait())
        if len(batch) < limit and self._settings.linger_ms > 0:
            await asyncio.sleep(self._settings.linger_ms / 1000)
            while len(batch) < limit and not q.empty():
                batch.append(q.get_nowait())
        return batch

    def _convert(self, batch: list[Inbound]) -> tuple[list[OutgoingRecord], int, list[float]]:
        records: list[OutgoingRecord] = []
        dead = 0
        source_times: list[float] = []
        for item in batch:
            try:
                out, source_time = self._converter.convert_timed(item.topic, item.payload)
                records.extend(out)
                if source_time is not None:
                    source_times.append(source_time)
            except ConversionError as e:
                records.append(self._converter.dead_letter(item.topic, item.payload, e))
                dead += 1
            except EncodeError as e:
                err = ConversionError(Reason.WRONG_TYPE, f"does not fit the event's schema: {e}")
                records.append(self._converter.dead_letter(item.topic, item.payload, err))
                dead += 1
            except Exception as e:  # a bug must not stall the bridge: keep the message as a dead letter
                log.exception("bridge.conversion_crashed", topic=item.topic)
                err = ConversionError(Reason.PROCESSING_ERROR, f"{type(e).__name__}: {e}")
                records.append(self._converter.dead_letter(item.topic, item.payload, err))
                dead += 1
        return records, dead, source_times

    async def _deliver(self, batch: list[Inbound], stop: asyncio.Event) -> None:
        records, dead, source_times = self._convert(batch)
        delay = self._settings.retry_initial_s
        while True:
            try:
                await self._publisher.publish_all(records)
                break
            except Exception as e:  # PublishError, or anything else from the producer: retry, never drop
                self._retrying = True
                self.metrics.count_retry()
                log.warning("bridge.kafka_produce_failed", error=str(e), error_type=type(e).__name__,
                            retriable=getattr(e, "retriable", None), messages=len(batch),
                            retry_in_s=delay, in_flight=self.metrics.in_flight)
                if stop.is_set():
                    self._release(batch, acked=0, produced=0, dead=0)
                    return  # not acknowledged: redelivered to the next bridge
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.retry_max_s)
        if self._retrying:
            self._retrying = False
            log.info("bridge.kafka_recovered")
        now, wall = time.monotonic(), time.time()
        for t in source_times:
            self.metrics.observe_source_to_ack(wall - t)
        acked = 0
        client, generation = self._client, self._generation
        for item in batch:
            if client is not None and item.generation == generation:
                client.ack(item.mid, item.qos)
                acked += 1
            self.metrics.observe_latency(now - item.received)
        self._release(batch, acked=acked, produced=len(records) - dead, dead=dead)

    def _release(self, batch: list[Inbound], *, acked: int, produced: int, dead: int) -> None:
        self.metrics.count_done(produced=produced, dead=dead, acked=acked, released=len(batch))
        self._slots.release(len(batch))

    async def _report(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while not stop.is_set():
                await asyncio.sleep(self._settings.report_every_s)
                log.info("bridge.counters", **self.metrics.snapshot())
