"""Fixtures of the warehouse tests: encoded mixed events, a scratch warehouse database."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from events.reader import ConsumedRecord
from events.registry import BuiltinRegistry
from events.serde import Serde
from events.topics import TopicNames
from projections.clickhouse.warehouse import ClickHouseWarehouse
from qi.platform import Platform


async def offline_serde(catalog) -> Serde:
    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames(""))
    await serde.prepare()
    return serde


def consumed(serde: Serde, events, *, partitions: int = 2) -> list[ConsumedRecord]:
    """Events as the runner hands them over (plain decode), with offsets per topic/partition."""
    topics = TopicNames("")
    nxt: dict[tuple[str, int], int] = {}
    out = []
    for e in events:
        tp = (topics.topic(e.TOPIC_FAMILY), hash(e.key()) % partitions)
        off = nxt.get(tp, 0)
        nxt[tp] = off + 1
        value = serde.encode_event(e)
        out.append(ConsumedRecord(tp[0], tp[1], off, 0, e.key().encode(), value,
                                  serde.decode(value, plain=True), None))
    return out


@pytest.fixture
def warehouse(platform: Platform, topic_prefix: str) -> Iterator[ClickHouseWarehouse]:
    """A fresh database of the session's chDB engine, dropped afterwards."""
    wh = platform.warehouse(database="wh_" + re.sub(r"\W", "_", topic_prefix).strip("_"))
    wh.start()
    try:
        yield wh
    finally:
        wh.start()  # a projector closes the warehouse it was given when it stops
        wh.drop()
        wh.close()
