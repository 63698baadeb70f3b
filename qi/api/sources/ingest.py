"""POST /events: JSON events validated exactly like ``qi publish`` (events.jsonl), the valid ones
published in one ``publish_many``; an answer per event."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from events.errors import EventsError, InputError, PublishError
from events.jsonl import parse_line
from events.publisher import Publisher
from qi.api.errors import Unavailable


class EventIngest:
    def __init__(self, make_publisher) -> None:  # make_publisher: async () -> Publisher (not started)
        self._make = make_publisher
        self._pub: Publisher | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        pass  # connects on first use: the API serves reads while Kafka is down

    async def close(self) -> None:
        if self._pub is not None:
            await self._pub.close()
            self._pub = None

    async def _publisher(self) -> Publisher:
        async with self._lock:
            if self._pub is None:
                pub = await self._make()
                try:
                    await pub.start()
                except (EventsError, OSError) as e:
                    raise Unavailable(f"Kafka is not reachable: {e}") from e
                self._pub = pub
            return self._pub

    async def publish(self, items: list[Any], *, source: str) -> list[dict[str, Any]]:
        """One result per item, in order: ``published`` with topic/partition/offset, or ``rejected``."""
        results: list[dict[str, Any]] = [{} for _ in items]
        good = []
        for i, item in enumerate(items):
            try:
                event = parse_line(i, json.dumps(item), default_source=source)
            except InputError as e:
                results[i] = {"index": i, "status": "rejected", "field": e.field, "reason": e.reason}
                continue
            good.append((i, event))
        if good:
            pub = await self._publisher()
            try:
                deliveries = await pub.publish_many([e for _, e in good])
            except PublishError as e:
                raise Unavailable(f"publishing failed ({'retriable' if e.retriable else 'not retriable'}): {e}; "
                                  "none of the valid events is confirmed; re-sending is safe") from e
            for (i, event), d in zip(good, deliveries):
                results[i] = {"index": i, "status": "published", "event_id": str(event.event_id),
                              "event_type": event.event_type, "topic": d.topic, "partition": d.partition,
                              "offset": d.offset}
        return results

    async def ping(self) -> bool:
        return self._pub is not None
