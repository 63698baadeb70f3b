"""The registry's state folded from twin, issuer and certificate events, and written to a schema.

A small fold of its own (twins with attributes and relations, certificates with status and
history, issuer keys); the live Postgres registry projection (projections issue) is not on main
yet. When it lands, replay should drive its handlers into the fresh schema instead (docs/audit.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql


@dataclass
class RegistryState:
    twins: dict[str, dict[str, Any]] = field(default_factory=dict)
    certificates: dict[str, dict[str, Any]] = field(default_factory=dict)
    issuer_keys: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    applied: int = 0

    def apply(self, event_type: str, r: dict[str, Any]) -> None:
        fn = getattr(self, f"_on_{event_type}", None)
        if fn is not None:
            fn(r)
            self.applied += 1

    # --- twins
    def _on_TwinRegistered(self, r):
        self.twins[r["twin_id"]] = {
            "twin_id": r["twin_id"], "kind": r["kind"], "name": r["name"], "owner": r.get("owner"),
            "attributes": dict(r.get("attributes") or {}), "relations": [], "status": "ACTIVE",
            "version": r["aggregate_version"], "updated_at": r["occurred_at"],
        }

    def _twin(self, r):
        t = self.twins.get(r["twin_id"])
        if t is not None:
            t["version"], t["updated_at"] = r["aggregate_version"], r["occurred_at"]
        return t

    def _on_TwinAttributesChanged(self, r):
        if (t := self._twin(r)) is not None:
            t["attributes"].update(r.get("changed") or {})
            for k in r.get("removed") or []:
                t["attributes"].pop(k, None)

    def _on_TwinRelated(self, r):
        if (t := self._twin(r)) is not None:
            rel = [r["relation"], r["target_twin_id"]]
            if rel not in t["relations"]:
                t["relations"].append(rel)

    def _on_TwinUnrelated(self, r):
        if (t := self._twin(r)) is not None:
            t["relations"] = [x for x in t["relations"] if x != [r["relation"], r["target_twin_id"]]]

    def _on_TwinDecommissioned(self, r):
        if (t := self._twin(r)) is not None:
            t["status"] = "DECOMMISSIONED"

    # --- certificates
    def _on_CertificateIssued(self, r):
        self.certificates[r["certificate_id"]] = {
            "certificate_id": r["certificate_id"], "twin_id": r["administrative"]["item"]["twin_id"],
            "issuer_id": r["administrative"]["issuer_id"], "kind": r["certificate_kind"], "status": "VALID",
            "valid_from": r["validity"]["valid_from"], "valid_until": r["validity"]["valid_until"],
            "version": r["aggregate_version"], "history": [["ISSUED", r["occurred_at"].isoformat()]],
        }

    def _cert_change(self, r, status: str, detail: str | None):
        c = self.certificates.get(r["certificate_id"])
        if c is not None:
            c["status"], c["version"] = status, r["aggregate_version"]
            c["history"].append([status, r["occurred_at"].isoformat()] + ([detail] if detail else []))

    def _on_CertificateRevoked(self, r):
        self._cert_change(r, "REVOKED", r.get("reason"))

    def _on_CertificateSuperseded(self, r):
        self._cert_change(r, "SUPERSEDED", r.get("superseded_by"))

    # --- issuers
    def _on_IssuerKeyRegistered(self, r):
        self.issuer_keys[(r["issuer_id"], r.get("key_id", ""))] = {
            "issuer_id": r["issuer_id"], "key_id": r.get("key_id", ""), "status": "ACTIVE",
            "updated_at": r["occurred_at"]}

    def _on_IssuerKeyRevoked(self, r):
        k = self.issuer_keys.get((r["issuer_id"], r.get("key_id", "")))
        if k is not None:
            k["status"], k["updated_at"] = "REVOKED", r["occurred_at"]


_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.replay (mode text NOT NULL, at timestamptz NOT NULL, events_applied bigint NOT NULL,
                         built_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE {s}.twins (twin_id text PRIMARY KEY, kind text, name text, owner text, attributes jsonb,
                        relations jsonb, status text, version bigint, updated_at timestamptz);
CREATE TABLE {s}.certificates (certificate_id text PRIMARY KEY, twin_id text, issuer_id text, kind text,
                               status text, valid_from timestamptz, valid_until timestamptz, version bigint,
                               history jsonb);
CREATE TABLE {s}.issuer_keys (issuer_id text, key_id text, status text, updated_at timestamptz,
                              PRIMARY KEY (issuer_id, key_id));
"""


async def write_schema(dsn: str, schema: str, state: RegistryState, mode: str, at: datetime) -> None:
    """Create ``schema`` (must not exist) and COPY the state into it, in one transaction."""
    s = sql.Identifier(schema)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.transaction():
            await conn.execute(sql.SQL(_DDL).format(s=s))
            await conn.execute(sql.SQL("INSERT INTO {s}.replay (mode, at, events_applied) VALUES (%s, %s, %s)")
                               .format(s=s), (mode, at, state.applied))
            async with conn.cursor() as cur:
                async with cur.copy(sql.SQL("COPY {s}.twins FROM STDIN").format(s=s)) as cp:
                    for t in state.twins.values():
                        await cp.write_row((t["twin_id"], t["kind"], t["name"], t["owner"],
                                            json.dumps(t["attributes"]), json.dumps(t["relations"]), t["status"],
                                            t["version"], t["updated_at"]))
                async with cur.copy(sql.SQL("COPY {s}.certificates FROM STDIN").format(s=s)) as cp:
                    for c in state.certificates.values():
                        await cp.write_row((c["certificate_id"], c["twin_id"], c["issuer_id"], c["kind"],
                                            c["status"], c["valid_from"], c["valid_until"], c["version"],
                                            json.dumps(c["history"])))
                async with cur.copy(sql.SQL("COPY {s}.issuer_keys FROM STDIN").format(s=s)) as cp:
                    for k in state.issuer_keys.values():
                        await cp.write_row((k["issuer_id"], k["key_id"], k["status"], k["updated_at"]))


async def show(dsn: str, schema: str, object_id: str) -> dict[str, Any] | None:
    """A twin or certificate of a replayed schema, as a dict (None if absent)."""
    s = sql.Identifier(schema)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for table, key in (("twins", "twin_id"), ("certificates", "certificate_id")):
            cur = await conn.execute(sql.SQL("SELECT row_to_json(x) FROM {s}.{t} x WHERE {k} = %s").format(
                s=s, t=sql.Identifier(table), k=sql.Identifier(key)), (object_id,))
            row = await cur.fetchone()
            if row:
                return {"table": table, **row[0]}
    return None


async def drop(dsn: str, schema: str) -> None:
    if not schema.startswith("replay_"):
        raise ValueError(f"{schema!r} is not a replay schema")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA {s} CASCADE").format(s=sql.Identifier(schema)))


async def list_schemas(dsn: str) -> list[tuple[str, str, datetime, int]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'replay\\_%' ORDER BY 1")
        out = []
        for (name,) in await cur.fetchall():
            c2 = await conn.execute(sql.SQL("SELECT mode, at, events_applied FROM {s}.replay").format(
                s=sql.Identifier(name)))
            row = await c2.fetchone()
            if row:
                out.append((name, row[0], row[1], row[2]))
        return out
