"""Which worker processes make up the platform, and how each is started.

A worker is a ``qi`` subcommand run as its own process; ``instances`` > 1
starts several processes of it, which share its consumer group's partitions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSpec:
    name: str                 # e.g. "score"
    command: tuple[str, ...]  # the full argv
    instances: int = 1

    @classmethod
    def qi(cls, name: str, *args: str) -> WorkerSpec:
        """A worker that is a ``qi`` subcommand, run with this interpreter."""
        return cls(name, (sys.executable, "-m", "qi", *args))

    def argv(self) -> list[str]:
        return list(self.command)

    def instance_names(self) -> list[str]:
        if self.instances == 1:
            return [self.name]
        return [f"{self.name}-{i + 1}" for i in range(self.instances)]


def fleet(counts: dict[str, int], *, bridge_config: str) -> list[WorkerSpec]:
    """The platform's workers with the instance counts asked for (0 leaves one out)."""
    every = [
        WorkerSpec.qi("validate", "worker", "validate"),
        WorkerSpec.qi("score", "worker", "score"),
        WorkerSpec.qi("project-postgres", "worker", "project", "--sink", "postgres"),
        WorkerSpec.qi("project-redis", "worker", "project", "--sink", "redis"),
        # chDB allows one process per data directory: never more than one instance.
        WorkerSpec.qi("project-clickhouse", "worker", "project", "--sink", "clickhouse"),
        WorkerSpec.qi("audit", "worker", "audit"),
        WorkerSpec.qi("bridge", "bridge", "mqtt", "--config", bridge_config),
        WorkerSpec.qi("api", "api"),  # the HTTP API (qi/api); QI_API_WORKERS for more processes
    ]
    out = []
    for w in every:
        n = counts.get(w.name, 1)
        if w.name == "project-clickhouse":
            n = min(n, 1)
        if n > 0:
            out.append(WorkerSpec(w.name, w.command, n))
    return out
