"""A supervised worker instance's consumer-group membership, kept across its restarts.

A SIGKILLed consumer cannot leave its group: the broker keeps its member until
the session times out, and on the embedded broker (Tansu) a restarted process
that joins meanwhile is a follower of that dead leader, paused 3 s per join
attempt, and assigned nothing until the session expired (docs/decisions/0073).
So each instance records its member id in the run directory once it is in the
group; the next process of the same instance (the supervisor starts it only
after the previous one exited) sends LeaveGroup for that member before it joins.

Only instances the supervisor names (``QI_RUNNER_INSTANCE``) do this: the name
is what makes "my predecessor" well defined. A file holding a member that
already left (a clean stop) costs one LeaveGroup answered UNKNOWN_MEMBER_ID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.group import LeaveGroupRequest

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Predecessor:
    member_id: str
    generation: int


class MemberFile:
    """``<run dir>/members/<instance>.<group>.json``: the last member id this instance had in ``group``."""

    def __init__(self, run_dir: Path, instance: str, group_id: str) -> None:
        self.group_id = group_id
        self.path = run_dir / "members" / f"{instance}.{group_id}.json"
        self._saved: str | None = None

    def load(self) -> Predecessor | None:
        try:
            data = json.loads(self.path.read_text())
            return Predecessor(str(data["member_id"]), int(data.get("generation", -1)))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, member_id: str, generation: int) -> None:
        """Record the member id (atomically; a no-op when unchanged)."""
        if not member_id or member_id == self._saved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"group": self.group_id, "member_id": member_id, "generation": generation}))
        tmp.replace(self.path)
        self._saved = member_id

    async def evict_predecessor(self, bootstrap: str, *, client_id: str) -> None:
        """Before joining: the member this instance's previous process left behind leaves the group."""
        before = self.load()
        if before is not None:
            await evict(bootstrap, self.group_id, before.member_id, client_id=client_id)
            self.clear()

    def clear(self) -> None:
        """After a clean leave: nothing for a successor to evict."""
        self.path.unlink(missing_ok=True)
        self._saved = None


def consumer_member(consumer) -> tuple[str, int] | None:  # noqa: ANN001 - an AIOKafkaConsumer
    """The member id and generation an aiokafka consumer currently has in its group, if any.

    aiokafka exposes neither publicly; its group coordinator holds both (faust reads the
    generation the same way)."""
    coordinator = getattr(consumer, "_coordinator", None)
    member_id = getattr(coordinator, "member_id", "")
    generation = getattr(coordinator, "generation", -1)
    if not member_id or generation is None or generation < 0:
        return None
    return member_id, generation


async def evict(bootstrap: str, group_id: str, member_id: str, *, client_id: str,
                timeout_ms: int = 5000) -> bool:
    """Send LeaveGroup for ``member_id`` to ``group_id``'s coordinator; True if the coordinator
    accepted it (LeaveGroup v0/v1 answers for the request, not per member: an unknown member
    is accepted too).

    Best effort: any failure is logged and the caller joins anyway (the broker then
    expires the old member by its session timeout, as without this)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id=client_id, request_timeout_ms=timeout_ms)
    try:
        await client.bootstrap()
        node = await client.coordinator_lookup(CoordinationType.GROUP, group_id)
        resp = await client.send(node, LeaveGroupRequest(group_id, member_id), group=ConnectionGroup.COORDINATION)
    except (KafkaError, OSError) as e:
        log.warning("membership.evict_failed", group=group_id, member_id=member_id, error=str(e))
        return False
    finally:
        await client.close()
    if resp.error_code != 0:
        log.warning("membership.evict_refused", group=group_id, member_id=member_id,
                    error=for_code(resp.error_code).__name__)
        return False
    log.info("membership.evicted", group=group_id, member_id=member_id)
    return True
