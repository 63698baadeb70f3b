"""The lean path: ``GET /verify/{certificate_id}`` and ``GET /live`` answered ahead of FastAPI's stack.

FastAPI + Starlette cost ~0.5 ms of CPU per request before an endpoint runs (the middleware chain,
routing through every route's regex, dependency solving, response models); public verification
must answer 2,000 requests/s on two shared cores (issue 10). :class:`QiApi` is the FastAPI app
with one difference: its ``__call__`` serves those two paths itself, as plain ASGI, and hands every
other request (and every request it is not sure about) to FastAPI unchanged. docs/decisions/0120.

What the lean path keeps, so a client cannot tell which path answered:

* the same bytes: the body is :meth:`qi.api.verification.Verifications.answer`, which the FastAPI
  route returns too; errors are the same ``errors.body`` JSON responses; the same headers;
* the rate limit of decision 0111 (the same bucket in ``app.state``), with the same ``api.denied``
  log line and 429 + Retry-After;
* the request metrics (``qi_api_requests_total{endpoint="verify"|"live"}``, latency, denials);
* the OpenAPI schema: the FastAPI routes stay declared (and answer when the lean path defers).

It defers to FastAPI for anything else: other methods, a ``root_path``, an id that does not match
the id pattern (FastAPI answers 422 after the rate limit, as before), ``/verify/`` with more path.
"""

from __future__ import annotations

import re
import time

import structlog
from fastapi import FastAPI

from qi.api.errors import ApiError, TooManyRequests, body
from qi.api.ratelimit import retry_after
from qi.api.routers.params import ID_PATTERN

log = structlog.get_logger(__name__)

_ID = re.compile(ID_PATTERN)
_VERIFY = "/verify/"
_JSON_NO_STORE = [(b"cache-control", b"no-store")]
_LIVE_BODY = b'{"live":true}'
_LIVE_HEADERS = [(b"content-length", str(len(_LIVE_BODY)).encode()), (b"content-type", b"application/json")]


class QiApi(FastAPI):
    """FastAPI with the lean path in front (everything else about the app is FastAPI's)."""

    _counters: dict | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path") and not self.root_path:
            path = scope["path"]
            if path.startswith(_VERIFY):
                certificate_id = path[len(_VERIFY):]
                if _ID.fullmatch(certificate_id):
                    await self._verify(scope, receive, send, certificate_id)
                    return
            elif path == "/live":
                t0 = time.perf_counter()
                await send({"type": "http.response.start", "status": 200, "headers": _LIVE_HEADERS})
                await send({"type": "http.response.body", "body": _LIVE_BODY})
                self._count("live", 200, t0)
                return
        await super().__call__(scope, receive, send)

    def _count(self, endpoint: str, status: int, t0: float) -> None:
        """What MetricsMiddleware records for a request FastAPI answers (children resolved once)."""
        if self._counters is None:
            self._counters = {}
        key = (endpoint, status)
        c = self._counters.get(key)
        if c is None:
            m = self.state.metrics
            c = self._counters[key] = (m.requests.labels(endpoint, str(status)), m.latency.labels(endpoint),
                                       m.denied.labels(str(status)) if status in (401, 403, 429) else None)
        c[0].inc()
        c[1].observe(time.perf_counter() - t0)
        if c[2] is not None:
            c[2].inc()

    async def _verify(self, scope, receive, send, certificate_id: str) -> None:
        t0 = time.perf_counter()
        status = 500
        try:
            # the rate limit first, as the route's dependency does (an unknown id spends a token too)
            client = scope["client"][0] if scope.get("client") else "-"
            wait = self.state.verify_bucket.take(client)
            if wait > 0:
                log.warning("api.denied", status=429, reason="rate", path=scope["path"], client=client)
                e = TooManyRequests(f"too many verification requests; retry in {wait:.1f} s",
                                    headers={"Retry-After": retry_after(wait)})
                status = e.status
                await body(e.status, e.code, e.detail, e.field, e.headers)(scope, receive, send)
                return
            try:
                doc = await self.state.verify_cache.answer(self.state.sources, certificate_id)
            except ApiError as e:
                status = e.status
                await body(e.status, e.code, e.detail, e.field, e.headers)(scope, receive, send)
                return
            except Exception as e:  # noqa: BLE001 - the app's catch-all (errors.install), on this path
                log.error("api.unexpected_error", path=scope["path"], error_type=type(e).__name__, exc_info=e)
                await body(500, "internal", "internal error; see the API's log")(scope, receive, send)
                return
            status = 200
            await send({"type": "http.response.start", "status": 200,
                        "headers": [*_JSON_NO_STORE, (b"content-length", str(len(doc)).encode()),
                                    (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": doc})
        finally:
            self._count("verify", status, t0)
