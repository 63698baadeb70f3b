"""Every source the API reads or writes, built by ``Platform.api_sources()``; started and closed
together by the app's lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from qi.api.sources.audit import AuditReader
from qi.api.sources.history import RegistryHistory
from qi.api.sources.ingest import EventIngest
from qi.api.sources.lookups import LookupReader
from qi.api.sources.registry import RegistryReader
from qi.api.sources.warehouse import WarehouseReader


@dataclass
class ApiSources:
    registry: RegistryReader
    lookups: LookupReader
    warehouse: WarehouseReader
    audit: AuditReader
    ingest: EventIngest
    history: RegistryHistory

    def all(self) -> list:
        return [self.registry, self.lookups, self.warehouse, self.audit, self.ingest, self.history]

    async def start(self) -> None:
        for s in self.all():
            await s.start()

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.all()), return_exceptions=True)

    async def health(self) -> dict[str, bool]:
        names = ("registry", "lookups", "warehouse", "audit")
        oks = await asyncio.gather(*(getattr(self, n).ping() for n in names), return_exceptions=True)
        return {n: ok is True for n, ok in zip(names, oks)}
