"""The app factory: ``create_app(settings, sources, tokens)`` builds the FastAPI app.

Nothing here reads the environment or builds clients: the caller (``Platform.api_app``, tests)
passes the sources in. ``include_routers`` is the one list of routers the app serves.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from qi.api import errors
from qi.api.auth import Tokens
from qi.api.fastpath import QiApi
from qi.api.limits import BodyLimit
from qi.api.metrics import ApiMetrics, MetricsMiddleware
from qi.api.ratelimit import TokenBucket
from qi.api.shared import Shared
from qi.api.routers import alerts, audit, certificates, events, health, registry, sensors, twins, verify
from qi.api.sources.container import ApiSources
from qi.api.verification import Verifications
from qi.api.web import router as web_router
from qi.config import ApiSettings

DESCRIPTION = """The read models of QI Stream over HTTP, certificate verification, and ingestion.

Authenticate with `Authorization: Bearer <token>` (`qi tokens issue --role ROLE --subject NAME`).
Roles: `reader` (twins, certificates, sensors, alerts), `publisher` (POST /events), `auditor`
(checkpoints, proofs, the registry at a point in time), `admin` (everything). `GET /verify/{id}`
and `GET /audit/public-key` are public; /verify is rate-limited per client (429 with Retry-After).
Errors are `{"detail", "code", "field"}`. See docs/api.md.
"""


def include_routers(app: FastAPI) -> None:
    """Every router the app serves, in one place."""
    for r in (health.router, twins.router, certificates.router, verify.router, sensors.router, alerts.router,
              registry.router, audit.router, events.router):
        app.include_router(r)


def create_app(settings: ApiSettings, sources: ApiSources, tokens: Tokens) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await sources.start()
        try:
            yield
        finally:
            await sources.close()

    app = QiApi(title="QI Stream API", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.sources = sources
    app.state.tokens = tokens
    app.state.metrics = ApiMetrics()
    app.state.verify_bucket = TokenBucket(settings.verify_rate_per_s / settings.workers,
                                          max(1, settings.verify_burst // settings.workers))
    app.state.verify_cache = Verifications(settings.verify_cache_s)
    app.state.shared = Shared()
    errors.install(app)
    include_routers(app)
    app.include_router(web_router())  # the dashboard (qi/api/web): pages, assets, live SSE
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
