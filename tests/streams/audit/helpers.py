"""Helpers for audit-log tests: settings with a fresh log and key pair, a running audit worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from events.signing import HybridKeyPair
from qi.config import AuditSettings
from qi.platform import Platform
from streams.audit.processor import AuditProcessor
from tests.streams.helpers import running


@dataclass
class Rec:
    """A fetched record as the audit writer reads it (the fields of aiokafka's ConsumerRecord it uses)."""
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    decoded: object = None


def audit_platform(platform: Platform, key_dir: Path, **audit: object) -> Platform:
    """The same platform with its own log id (per test prefix) and a fresh log key pair."""
    if not (key_dir / "audit-log.pub.json").exists():
        HybridKeyPair.generate(key_id="test-log/1").save(key_dir, "audit-log")
    settings = platform.settings.model_copy(update={"audit": AuditSettings(
        log_id=f"test.local/{platform.settings.kafka.topic_prefix.rstrip('.')}", key_dir=key_dir,
        **({"head_every_entries": 1000, "head_every_s": 1.0} | audit))})
    return Platform(settings)


@contextlib.asynccontextmanager
async def audit_worker(platform: Platform) -> AsyncIterator[AuditProcessor]:
    serde = await platform.serde()
    processor = platform.audit_processor(serde)
    async with running(platform, processor):
        yield processor


async def wait_for_size(processor: AuditProcessor, size: int, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while processor.writer.tree_size < size:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"tree size {processor.writer.tree_size}, expected {size}")
        await asyncio.sleep(0.1)
