"""The Postgres registry (``projections.registry.REGISTRY``): twins, relations, certificates.

A small connection pool (psycopg_pool); a store that is down or not projected yet is
:class:`~qi.api.errors.Unavailable` (503), never a 500.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from qi.api.errors import BadRequest, Unavailable

_TWIN_COLS = ("twin_id", "kind", "name", "manufacturer", "model", "serial_number", "owner", "status", "attributes",
              "registered_at", "updated_at", "decommission_reason")
_CERT_COLS = ("certificate_id", "twin_id", "issuer_id", "valid_from", "valid_until", "lifecycle", "verdict",
              "validated_at", "status")


class RegistryReader:
    def __init__(self, dsn: str, schema: str, *, max_size: int = 4, timeout_s: float = 5.0) -> None:
        self.schema = schema
        self._pool = AsyncConnectionPool(dsn, min_size=1, max_size=max_size, open=False, timeout=timeout_s,
                                         kwargs={"autocommit": True, "row_factory": dict_row})

    async def start(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    def _t(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    @asynccontextmanager
    async def _conn(self):
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as e:
            raise Unavailable("the registry (Postgres) is not reachable; retry later") from e
        except psycopg.errors.UndefinedTable as e:
            raise Unavailable("the registry is not projected yet (is `qi worker project --sink postgres` running?)") from e
        except psycopg.DataError as e:  # a value Postgres cannot take (validation should have caught it)
            raise BadRequest(f"a filter value is not acceptable: {type(e).__name__}") from e
        except psycopg.OperationalError as e:
            raise Unavailable(f"the registry (Postgres) failed: {type(e).__name__}; retry later") from e

    async def _all(self, query: sql.Composable, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    # --- twins -----------------------------------------------------------------------------
    async def twins(self, *, status: str | None, kind: str | None, owner: str | None, attributes: dict[str, str],
                    after: str | None, limit: int) -> list[dict[str, Any]]:
        q = sql.SQL("SELECT {cols} FROM {t} WHERE (%(status)s::text IS NULL OR status = %(status)s) "
                    "AND (%(kind)s::text IS NULL OR kind = %(kind)s) AND (%(owner)s::text IS NULL OR owner = %(owner)s) "
                    "AND (%(attrs)s::jsonb = '{{}}'::jsonb OR attributes @> %(attrs)s::jsonb) "
                    "AND (%(after)s::text IS NULL OR twin_id > %(after)s) ORDER BY twin_id LIMIT %(limit)s").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, _TWIN_COLS)), t=self._t("twins"))
        return await self._all(q, {"status": status, "kind": kind, "owner": owner, "attrs": json.dumps(attributes),
                                   "after": after, "limit": limit})

    async def twin(self, twin_id: str) -> dict[str, Any] | None:
        q = sql.SQL("SELECT {cols} FROM {t} WHERE twin_id = %(id)s").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, _TWIN_COLS)), t=self._t("twins"))
        rows = await self._all(q, {"id": twin_id})
        return rows[0] if rows else None

    async def relations(self, twin_id: str) -> list[dict[str, Any]]:
        q = sql.SQL("SELECT twin_id, relation, target_twin_id, updated_at FROM {t} "
                    "WHERE active AND (twin_id = %(id)s OR target_twin_id = %(id)s) "
                    "ORDER BY relation, twin_id, target_twin_id LIMIT 1000").format(t=self._t("twin_relations"))
        return await self._all(q, {"id": twin_id})

    # --- certificates ----------------------------------------------------------------------
    async def certificates(self, *, status: str | None, twin_id: str | None, expiring_before: datetime | None,
                           after: str | None, limit: int) -> list[dict[str, Any]]:
        q = sql.SQL("SELECT {cols} FROM {t} WHERE (%(status)s::text IS NULL OR status = %(status)s) "
                    "AND (%(twin)s::text IS NULL OR twin_id = %(twin)s) "
                    "AND (%(before)s::timestamptz IS NULL OR (valid_until >= now() AND valid_until < %(before)s "
                    "     AND lifecycle = 'issued')) "
                    "AND (%(after)s::text IS NULL OR certificate_id > %(after)s) "
                    "ORDER BY certificate_id LIMIT %(limit)s").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, _CERT_COLS)), t=self._t("certificate_status"))
        return await self._all(q, {"status": status, "twin": twin_id, "before": expiring_before, "after": after,
                                   "limit": limit})

    async def certificate(self, certificate_id: str) -> dict[str, Any] | None:
        q = sql.SQL("SELECT c.certificate_id, c.twin_id, c.certificate_kind, c.issuer_id, c.issuer_name, c.issued_at, "
                    "c.valid_from, c.valid_until, c.lifecycle, c.revoked_by, c.reason, c.superseded_by, c.changed_at, "
                    "s.status, s.verdict, s.checks, s.validated_at, v.certificate_version, v.validator_version "
                    "FROM {c} c JOIN {s} s USING (certificate_id) LEFT JOIN {v} v USING (certificate_id) "
                    "WHERE c.certificate_id = %(id)s").format(
            c=self._t("certificates"), s=self._t("certificate_status"), v=self._t("certificate_validations"))
        rows = await self._all(q, {"id": certificate_id})
        return rows[0] if rows else None

    async def certificate_history(self, certificate_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        q = sql.SQL("SELECT event_id, event_type, occurred_at, detail FROM {t} WHERE certificate_id = %(id)s "
                    "ORDER BY occurred_at, event_id LIMIT %(limit)s").format(t=self._t("certificate_history"))
        return await self._all(q, {"id": certificate_id, "limit": limit})

    async def issuance_event_id(self, certificate_id: str) -> str | None:
        q = sql.SQL("SELECT event_id FROM {t} WHERE certificate_id = %(id)s AND event_type = 'CertificateIssued' "
                    "ORDER BY occurred_at LIMIT 1").format(t=self._t("certificate_history"))
        rows = await self._all(q, {"id": certificate_id})
        return rows[0]["event_id"] if rows else None

    async def issuer_key(self, key_id: str) -> dict[str, Any] | None:
        q = sql.SQL("SELECT key_id, issuer_id, valid_from, valid_until, accreditations, status, revoked_at, "
                    "revoked_reason FROM {t} WHERE key_id = %(id)s").format(t=self._t("issuer_keys"))
        rows = await self._all(q, {"id": key_id})
        return rows[0] if rows else None

    async def ping(self) -> bool:
        try:
            async with self._pool.connection(timeout=1.0) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - readiness: any failure means not ready
            return False
