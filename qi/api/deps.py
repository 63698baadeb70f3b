"""Dependencies injected per request: the sources, the settings and the caller's principal.

Every dependency is a coroutine: FastAPI runs a plain ``def`` dependency in a thread pool, a
thread hop per request for what is an attribute read (decision 0118)."""

from __future__ import annotations

from fastapi import Request

from qi.api.sources.container import ApiSources
from qi.config import ApiSettings


async def sources(request: Request) -> ApiSources:
    return request.app.state.sources


async def settings(request: Request) -> ApiSettings:
    return request.app.state.settings
