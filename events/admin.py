"""Topic administration: make sure every topic exists with its partition count."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from events.errors import EventsError

log = structlog.get_logger(__name__)
_TOPIC_ALREADY_EXISTS = 36


class TopicAdminError(EventsError):
    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool


async def ensure_topics(
    bootstrap: str, wanted: dict[str, int], *, replication_factor: int = 1, timeout_ms: int = 15_000
) -> list[TopicState]:
    """Create missing topics; report existing ones (their partition count is never changed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, p, replication_factor) for n, p in wanted.items() if n not in existing]
        if missing:
            resp = await admin.create_topics(missing)
            for topic, code, message in _topic_errors(resp):
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise TopicAdminError(f"cannot create topic {topic}: error {code} {message}", retriable=False)
        described = await admin.describe_topics(list(wanted))
    except KafkaError as e:
        raise TopicAdminError(f"topic administration failed: {e}", retriable=True) from e
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    states = []
    for name, want in wanted.items():
        have = counts.get(name, 0)
        if have and have != want:
            log.warning("topic.partitions_differ", topic=name, configured=want, actual=have)
        states.append(TopicState(name, have, name not in existing))
    return states


def _topic_errors(resp: object) -> list[tuple[str, int, str | None]]:
    out = []
    for entry in getattr(resp, "topic_errors", []):
        topic, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((topic, code, message))
    return out
