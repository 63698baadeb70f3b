"""/live, /ready, /health and /metrics, like every worker's (streams/health.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from qi.api.deps import sources
from qi.api.models import Health
from qi.api.sources.container import ApiSources

router = APIRouter(tags=["health"])


@router.get("/live", summary="200 while the process answers")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/ready", response_model=Health, responses={503: {"model": Health}},
            summary="200 when the registry, lookups, warehouse and audit log answer")
async def ready(request: Request, src: ApiSources = Depends(sources)) -> JSONResponse:
    stores = await src.health()
    ready = stores["registry"] and stores["lookups"]
    doc = Health(ready=ready, stores=stores, workers=request.app.state.settings.workers).model_dump()
    return JSONResponse(doc, status_code=200 if ready else 503)


@router.get("/health", response_model=Health, summary="the same detail, 200 while live")
async def health(request: Request, src: ApiSources = Depends(sources)) -> Health:
    stores = await src.health()
    return Health(ready=stores["registry"] and stores["lookups"], stores=stores,
                  workers=request.app.state.settings.workers)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus text")
async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(generate_latest(request.app.state.metrics.registry),
                             headers={"Content-Type": CONTENT_TYPE_LATEST})
