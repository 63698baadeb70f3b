"""Read the registry topics from the beginning, select by time, fold, write a fresh schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.errors import DecodeError
from events.reader import log_end_offsets
from events.serde import Serde
from projections.pointintime.registry import RegistryState, write_schema
from projections.pointintime.select import Mode, select

FAMILIES = ("twins", "issuers", "certificates")


@dataclass
class ReplayResult:
    schema: str
    mode: Mode
    at: datetime
    read: int
    applied: int
    twins: int
    certificates: int


def schema_name(mode: Mode, at: datetime) -> str:
    return f"replay_{mode}_{at.strftime('%Y%m%dT%H%M%S')}_{datetime.now().strftime('%H%M%S%f')}"


async def replay_registry(
    *, bootstrap: str, dsn: str, serde: Serde, topics: list[str], mode: Mode, at: datetime,
    progress: Callable[[int, int], None] | None = None, schema: str | None = None,
) -> ReplayResult:
    """``progress(done, total)`` is called after every fetch."""
    state, read = await fold_registry(bootstrap=bootstrap, serde=serde, topics=topics, mode=mode, at=at,
                                      progress=progress)
    schema = schema or schema_name(mode, at)
    await write_schema(dsn, schema, state, mode, at)
    return ReplayResult(schema, mode, at, read, state.applied, len(state.twins), len(state.certificates))


async def fold_registry(
    *, bootstrap: str, serde: Serde, topics: list[str], mode: Mode, at: datetime,
    progress: Callable[[int, int], None] | None = None, client_id: str = "qi-replay",
) -> tuple[RegistryState, int]:
    """The registry as it was at ``at`` (in memory) and the number of records read."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                         client_id=client_id)
    await c.start()
    events: list[tuple[int, str, dict]] = []
    read = 0
    try:
        known = await c.topics()
        tps = [TopicPartition(t, p) for t in topics if t in known for p in sorted(c.partitions_for_topic(t) or ())]
        c.assign(tps)
        ends = await log_end_offsets(c, tps)
        starts = await c.beginning_offsets(tps)
        for tp in tps:
            c.seek(tp, starts[tp])
        total = sum(ends[tp] - starts[tp] for tp in tps)
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        if progress:
            progress(0, total)
        while remaining:
            for tp, msgs in (await c.getmany(*remaining, timeout_ms=500, max_records=10000)).items():
                for m in msgs:
                    if m.offset >= ends[tp]:
                        continue
                    read += 1
                    try:
                        d = serde.decode(m.value or b"")
                    except DecodeError:
                        continue  # poison never entered the registry
                    events.append((read, d.event_type, d.record))
                if msgs and msgs[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
            if progress:
                progress(read, total)
    finally:
        await c.stop()
    state = RegistryState()
    for event_type, record in select(events, mode, at):
        state.apply(event_type, record)
    return state, read
