"""The audit worker's own Prometheus series, read from its writer when scraped."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge


class TreeState(Protocol):
    @property
    def tree_size(self) -> int: ...
    @property
    def head_age_s(self) -> float: ...
    @property
    def unsigned_leaves(self) -> int: ...


def audit_registry(tree: TreeState) -> CollectorRegistry:
    """Tree size, time since the last signed head and leaves not yet covered by one."""
    r = CollectorRegistry()
    Gauge("qi_audit_tree_size", "leaves in the transparency log", registry=r).set_function(lambda: tree.tree_size)
    Gauge("qi_audit_seconds_since_signed_head", "time since the last signed tree head",
          registry=r).set_function(lambda: tree.head_age_s)
    Gauge("qi_audit_unsigned_leaves", "leaves appended after the last signed tree head",
          registry=r).set_function(lambda: tree.unsigned_leaves)
    return r
