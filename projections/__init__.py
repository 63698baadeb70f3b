"""Read models built from the log: Postgres (registry), ClickHouse (warehouse),
Redis (hot lookups); checkpointed and idempotent, rebuildable from the log.
See docs/architecture.md for what lands here next.
"""
