"""Client for the Confluent Schema Registry REST API.

Speaks the subset every compatible registry implements (Confluent, Karapace,
Apicurio's ccompat API, Redpanda): register under a subject, fetch by id.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from events.errors import RegistryError, UnknownSchemaError

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Confluent's error codes for "not found"
_SCHEMA_NOT_FOUND = 40403


class ConfluentRegistry:
    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            auth=auth,
            timeout=timeout,
            headers={"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE},
            transport=transport,
        )

    async def _request(self, method: str, path: str, **kw: object) -> dict:
        try:
            resp = await self._client.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.TransportError as e:
            raise RegistryError(f"schema registry unreachable: {e}", retriable=True) from e
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            message = body.get("message") or resp.text[:200]
            err = RegistryError(
                f"schema registry answered {resp.status_code} to {method} {path}: {message}",
                retriable=resp.status_code >= 500 or resp.status_code == 429,
                status=resp.status_code,
            )
            err.error_code = body.get("error_code")  # type: ignore[attr-defined]
            raise err
        return resp.json()

    async def register(self, subject: str, schema_text: str) -> int:
        body = await self._request(
            "POST",
            f"/subjects/{quote(subject, safe='')}/versions",
            json={"schema": schema_text, "schemaType": "AVRO"},
        )
        return int(body["id"])

    async def schema_text(self, schema_id: int) -> str:
        try:
            body = await self._request("GET", f"/schemas/ids/{schema_id}")
        except RegistryError as e:
            if e.status == 404:
                raise UnknownSchemaError(schema_id) from e
            raise
        return str(body["schema"])

    async def close(self) -> None:
        await self._client.aclose()
