"""Errors of the API and their one JSON shape: ``{"detail": str, "code": str, "field": str | null}``.

``ApiError`` -> ``BadRequest`` (400) | ``Unauthorized`` (401) | ``Forbidden`` (403) | ``NotFound`` (404)
| ``PayloadTooLarge`` (413) | ``UnsupportedMediaType`` (415) | ``TooManyRequests`` (429)
| ``Unavailable`` (503: a store is down; retry). Request validation failures are 422 with the same
shape. Nothing else escapes: an unexpected exception is logged and answered 500 without detail.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

log = structlog.get_logger(__name__)


class ErrorBody(BaseModel):
    detail: str
    code: str
    field: str | None = None


class ApiError(Exception):
    status = 500
    code = "error"

    def __init__(self, detail: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail, self.field, self.headers = detail, field, headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


def body(status: int, code: str, detail: str, field: str | None = None,
         headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code, "field": field}, status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "path", "body", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return body(e.status, e.code, e.detail, e.field, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = e.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        where = _loc(tuple(first.get("loc", ())))
        msg = f"{where}: {first['msg']}" if where else str(first["msg"])
        if len(problems) > 1:
            msg += f" (and {len(problems) - 1} more)"
        return body(422, "invalid", msg, where or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("api.unexpected_error", path=request.url.path, error_type=type(e).__name__, exc_info=e)
        return body(500, "internal", "internal error; see the API's log")


#: documented on every route, so the OpenAPI schema names each answer a client may get
COMMON = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 413, 415, 422, 429, 503)}
