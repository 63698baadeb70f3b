"""Dependencies injected per request: the sources, the settings and the caller's principal."""

from __future__ import annotations

from fastapi import Request

from qi.api.sources.container import ApiSources
from qi.config import ApiSettings


def sources(request: Request) -> ApiSources:
    return request.app.state.sources


def settings(request: Request) -> ApiSettings:
    return request.app.state.settings
