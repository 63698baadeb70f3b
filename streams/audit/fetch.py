"""Whole partitions as raw record batches, for ``verify``: Fetch responses without per-record objects.

aiokafka's consumer wraps every record in a ``ConsumerRecord`` (a Python dataclass with eleven
fields, headers copied into a tuple): about a third of ``qi audit verify`` went there. ``verify``
needs only the offset, key and value of each record, so it sends Fetch requests itself through
aiokafka's client and hands on each partition's returned bytes (:class:`Chunk`); :func:`records`
iterates them with aiokafka's own record-batch parser (C), with the consumer's rules: control
batches skipped, CRCs checked, only offsets in ``[start, end)``. The next request is sent before a
response is handed on, so the broker prepares it while the caller works.

Start offsets come from ListOffsets (earliest), the end from the high watermark of each
partition's first Fetch answer, as in :func:`events.reader.log_end_offsets` (Tansu's ListOffsets
latest is not to be trusted, STACK.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.offset import OffsetRequest, OffsetResetStrategy
from aiokafka.record.memory_records import MemoryRecords

READ_UNCOMMITTED = 0
EARLIEST = OffsetResetStrategy.EARLIEST


class FetchFailed(Exception):
    """A partition could not be read to its end (a broker error or a record larger than a fetch)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """The bytes one Fetch response returned for one partition, and the offsets wanted of them."""

    tp: TopicPartition
    raw: bytes
    start: int  # the fetch offset: records below it are skipped (a batch may begin earlier)
    end: int  # exclusive: the log end when the read began


def records(chunk: Chunk) -> Iterator[Any]:
    """The records of ``chunk`` with offsets in ``[start, end)``, ascending: objects with
    ``offset``, ``key`` and ``value`` (aiokafka's C ``DefaultRecord``), made as they are iterated
    (so each is garbage as soon as the caller is done with it: no collector work for the batch)."""
    return chain.from_iterable(_batches(chunk))


def _batches(chunk: Chunk) -> Iterator[Iterable[Any]]:
    mr = MemoryRecords(chunk.raw)
    lo, hi = chunk.start, chunk.end
    while mr.has_next():
        b = mr.next_batch()
        if not b.validate_crc():
            raise kafka_errors.CorruptRecordException(f"Invalid CRC - {chunk.tp}")
        if b.is_control_batch:
            continue
        base = getattr(b, "base_offset", None)  # v2 batches; legacy message sets are filtered per record
        if base is not None and base >= lo and b.next_offset <= hi:
            yield b
        else:
            yield [r for r in b if lo <= r.offset < hi]


def _advance(chunk: Chunk) -> int:
    """The fetch offset after ``chunk``: the next offset of its last complete batch (headers only)."""
    mr = MemoryRecords(chunk.raw)
    pos = chunk.start
    while mr.has_next():
        pos = max(pos, mr.next_batch().next_offset)
    return pos


def _by_leader(client: AIOKafkaClient, wanted: Iterable[tuple[TopicPartition, tuple[int, ...]]]
               ) -> dict[int, list[tuple[str, list[tuple[int, ...]]]]]:
    """A request's topics per leader node: ``(tp, fields)`` -> ``{node: [(topic, [(partition, *fields)])]}``."""
    by_node: dict[int, dict[str, list[tuple[int, ...]]]] = {}
    for tp, fields in wanted:
        node = client.cluster.leader_for_partition(tp)
        if node is None or node == -1:
            raise FetchFailed(f"no leader for {tp.topic}/{tp.partition}")
        by_node.setdefault(node, {}).setdefault(tp.topic, []).append((tp.partition, *fields))
    return {node: list(topics.items()) for node, topics in by_node.items()}


async def _back_off(client: AIOKafkaClient) -> None:
    """After a retriable broker error (a leader moving): a pause, then fresh metadata."""
    await asyncio.sleep(0.1)
    await client.force_metadata_update()


async def _starts(client: AIOKafkaClient, tps: list[TopicPartition], retries: int) -> dict[TopicPartition, int]:
    """Each partition's first offset (ListOffsets, earliest: Tansu answers it right; only its
    *latest* is not to be trusted, STACK.md), one request per leader; retriable errors (a leader
    moving) are asked again after fresh metadata, up to ``retries`` times."""
    starts: dict[TopicPartition, int] = {}
    for attempt in range(retries + 1):
        by_node = _by_leader(client, ((tp, (EARLIEST,)) for tp in tps if tp not in starts))
        if not by_node:
            return starts
        failed = None
        for node, topics in by_node.items():
            response = await client.send(node, OffsetRequest(-1, READ_UNCOMMITTED, topics))
            for topic, parts in response.topics:
                for partition, error_code, *info in parts:
                    error = kafka_errors.for_code(error_code)
                    if error is kafka_errors.NoError:
                        starts[TopicPartition(topic, partition)] = info[0][0] if response.API_VERSION == 0 else info[1]
                    elif getattr(error, "retriable", False) and attempt < retries:
                        failed = error
                    else:
                        raise FetchFailed(f"{topic}/{partition}: no first offset: {error.__name__}")
        if failed is not None:
            await _back_off(client)
    return starts


async def read_chunks(
    bootstrap: str, topics: list[str], on_chunk: Callable[[Chunk], None], *, client_id: str = "qi-audit-verify",
    partition_bytes: int = 16 * 1024 * 1024, max_bytes: int = 64 * 1024 * 1024, retries: int = 20,
) -> dict[TopicPartition, tuple[int, int]]:
    """Every record of ``topics`` up to the log end as it was when the read began, as :class:`Chunk`s
    in offset order per partition; returns each partition's ``(start, end)``. One client does it
    all (decision 0149): the first offsets from ListOffsets, the end from the high watermark of the
    first Fetch answer of each partition, so no consumer is started first."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id=client_id)
    await client.bootstrap()
    try:
        await client.force_metadata_update()  # topics created since the bootstrap's metadata
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(client.cluster.partitions_for_topic(t) or ())]
        if not tps:
            return {}
        starts = await _starts(client, tps, retries)
        pos = dict(starts)
        ends: dict[TopicPartition, int] = {}  # from a partition's first Fetch answer
        fails = 0

        def requests() -> list[asyncio.Task]:
            by_node = _by_leader(client, ((tp, (off, partition_bytes)) for tp, off in sorted(pos.items())))
            # a partition's first fetch asks for no minimum: an empty one answers (its end) at once
            min_bytes = 0 if any(tp not in ends for tp in pos) else 1
            return [asyncio.create_task(client.send(node, FetchRequest(500, min_bytes, max_bytes, READ_UNCOMMITTED, t)))
                    for node, t in by_node.items()]

        pending = requests()
        while pending:
            responses = await asyncio.gather(*pending)
            chunks: list[Chunk] = []
            retry = False
            for response in responses:
                for topic, parts in response.topics:
                    for partition, error_code, highwater, *data in parts:
                        tp = TopicPartition(topic, partition)
                        if tp not in pos:
                            continue
                        error = kafka_errors.for_code(error_code)
                        if error is not kafka_errors.NoError:
                            if not getattr(error, "retriable", False):
                                raise FetchFailed(f"{topic}/{partition} at {pos[tp]}: {error.__name__}")
                            retry = True
                            continue
                        end = ends.get(tp)
                        if end is None:
                            end = ends[tp] = max(highwater, starts[tp])
                            if end <= pos[tp]:  # empty: nothing to read
                                del pos[tp]
                                continue
                        chunk = Chunk(tp, data[-1], pos[tp], end)
                        nxt = _advance(chunk)
                        if nxt == pos[tp]:
                            if chunk.raw:
                                raise FetchFailed(f"{topic}/{partition} at {pos[tp]}: a record larger than "
                                                  f"{partition_bytes} bytes")
                            retry = True
                            continue
                        chunks.append(chunk)
                        if nxt >= chunk.end:
                            del pos[tp]
                        else:
                            pos[tp] = nxt
            if retry:
                fails += 1
                if fails > retries:
                    raise FetchFailed(f"gave up after {retries} retried fetches: {sorted(pos)}")
                await _back_off(client)
            pending = requests() if pos else []
            if pending:
                await asyncio.sleep(0)  # let the requests go out before the CPU work below
            for chunk in chunks:
                on_chunk(chunk)
    finally:
        await client.close()
    return {tp: (starts[tp], ends.get(tp, starts[tp])) for tp in tps}
