"""The lean path: ``GET /verify/{certificate_id}``, ``GET /live`` and a sensor's readings
(``GET /sensors/{twin_id}/{sensor_id}/readings``) answered ahead of FastAPI's stack.

FastAPI + Starlette cost ~0.5 ms of CPU per request before an endpoint runs (the middleware chain,
routing through every route's regex, dependency solving, response models); public verification
must answer 2,000 requests/s on two shared cores (issue 10). :class:`QiApi` is the FastAPI app
with one difference: its ``__call__`` serves those two paths itself, as plain ASGI, and hands every
other request (and every request it is not sure about) to FastAPI unchanged. docs/decisions/0120.

The readings route costs ~1 ms of CPU per request through FastAPI (its dependency solving and
query parameter validation, measured in-process), as much as the rest of the API's work for it; a
live chart asks for it once a second per viewer (decision 0129). The lean path serves only the
plain form of that request: a valid bearer token of a role that may read, ``from``/``to`` as
``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`` and ``max_points`` as a plain integer in range, each at
most once; anything else (no token, a bad one, another spelling, a parameter FastAPI would refuse)
goes to FastAPI, which answers and logs it as before. Both paths check the range with
``routers.sensors.series_ask`` and build the body with ``series_body``.

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
from datetime import datetime
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI

from qi.api.auth import Role, allowed, bearer_token
from qi.api.errors import ApiError, TooManyRequests, Unauthorized, body
from qi.api.ratelimit import retry_after
from qi.api.routers.params import ID_PATTERN
from qi.api.routers.sensors import DEFAULT_POINTS, MAX_POINTS, MIN_POINTS, series_ask, series_body

log = structlog.get_logger(__name__)

_ID = re.compile(ID_PATTERN)
_VERIFY = "/verify/"
_JSON_NO_STORE = [(b"cache-control", b"no-store")]
_LIVE_BODY = b'{"live":true}'
_LIVE_HEADERS = [(b"content-length", str(len(_LIVE_BODY)).encode()), (b"content-type", b"application/json")]
_SENSORS, _READINGS = "/sensors/", "/readings"
#: the one spelling of a time the lean path reads itself: where ``datetime.fromisoformat`` and
#: pydantic agree (pydantic refuses an offset of +00:60, fromisoformat takes it; both refuse 24:00)
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
_POINTS = re.compile(r"[1-9]\d{1,3}")
_READERS = allowed(Role.reader)  # the sensors router's require(Role.reader)


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
            elif path.startswith(_SENSORS) and path.endswith(_READINGS):
                ask = self._plain_readings(scope, path)
                if ask is not None:
                    await self._respond(scope, receive, send, "readings", series_body(self.state, ask))
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
        # the rate limit first, as the route's dependency does (an unknown id spends a token too)
        client = scope["client"][0] if scope.get("client") else "-"
        wait = self.state.verify_bucket.take(client)
        if wait > 0:
            log.warning("api.denied", status=429, reason="rate", path=scope["path"], client=client)
            doc = _refused(TooManyRequests(f"too many verification requests; retry in {wait:.1f} s",
                                           headers={"Retry-After": retry_after(wait)}))
        else:
            doc = self.state.verify_cache.answer(self.state.sources, certificate_id)
        await self._respond(scope, receive, send, "verify", doc, _JSON_NO_STORE, t0)

    async def _respond(self, scope, receive, send, endpoint: str, doc, headers=(), t0: float | None = None) -> None:
        """Send the JSON document ``doc`` (an awaitable) resolves to, or its :class:`ApiError` as the
        app's error body, or the app's 500; counted as FastAPI's middleware counts ``endpoint``."""
        t0 = time.perf_counter() if t0 is None else t0
        status = 500
        try:
            try:
                doc = await doc
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
                        "headers": [*headers, (b"content-length", str(len(doc)).encode()),
                                    (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": doc})
        finally:
            self._count(endpoint, status, t0)

    def _plain_readings(self, scope, path: str):
        """The checked ``SeriesAsk`` of a readings request in the plain form the lean path serves
        (module docstring), or None: FastAPI answers it (and refuses or logs what needs it)."""
        parts = path.split("/")
        if len(parts) != 5 or not _ID.fullmatch(parts[2]) or not _ID.fullmatch(parts[3]):
            return None
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        token = bearer_token(header)
        if not token:
            return None
        try:
            if self.state.tokens.verify(token).role not in _READERS:
                return None
        except Unauthorized:
            return None
        seen: dict[str, str] = {}
        for k, v in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if k in ("from", "to", "max_points"):
                if k in seen:
                    return None
                seen[k] = v
        times = {}
        for k in ("from", "to"):
            v = seen.get(k)
            if v is not None:
                if not _TIME.fullmatch(v):
                    return None
                try:
                    times[k] = datetime.fromisoformat(v)
                except ValueError:
                    return None
        points = seen.get("max_points")
        if points is not None and not (_POINTS.fullmatch(points) and MIN_POINTS <= int(points) <= MAX_POINTS):
            return None
        try:
            return series_ask(parts[2], parts[3], times.get("from"), times.get("to"),
                              DEFAULT_POINTS if points is None else int(points), self.state.settings)
        except ApiError:
            return None


async def _refused(e: ApiError) -> bytes:
    raise e
