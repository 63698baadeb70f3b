"""Analysts' queries: through the owner's endpoint when a projector holds the chDB directory,
straight to the engine otherwise (a server, or an embedded directory nobody holds).

Queries always run read-only (ClickHouse ``readonly=1``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import httpx

from projections.clickhouse.errors import QueryError, WarehouseUnavailable
from projections.clickhouse.warehouse import _client, _driver_error, is_embedded

OutputFormat = Literal["table", "csv", "json"]


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    via: str = "engine"

    def to_json(self) -> str:
        return json.dumps({"columns": self.columns, "types": self.types,
                           "rows": [[_plain(v) for v in r] for r in self.rows]}, ensure_ascii=False)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, (_plain(v) for v in r))) for r in self.rows]

    def render(self, fmt: OutputFormat) -> str:
        if fmt == "json":
            return json.dumps(self.records(), ensure_ascii=False, indent=2)
        cells = [[_cell(v) for v in r] for r in self.rows]
        if fmt == "csv":
            out = io.StringIO()
            w = csv.writer(out, lineterminator="\n")
            w.writerow(self.columns)
            w.writerows(cells)
            return out.getvalue().rstrip("\n")
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
        lines.append(f"({len(self.rows)} row{'s' if len(self.rows) != 1 else ''})")
        return "\n".join(lines)


def _plain(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, uuid.UUID | Decimal):
        return str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def _cell(v: Any) -> str:
    v = _plain(v)
    if v is None:
        return "NULL"
    if isinstance(v, list | dict):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def canonical_dsn(dsn: str) -> str:
    """chdb:///a/../b and chdb://rel/dir name the same directory as its absolute path."""
    if is_embedded(dsn):
        path = dsn.split("://", 1)[1].split("?", 1)[0]
        return f"chdb://{Path(path).resolve()}"
    return dsn


def announce_path(run_dir: Path, dsn: str) -> Path:
    """Where the owner of an embedded warehouse announces its SQL endpoint."""
    digest = hashlib.sha1(canonical_dsn(dsn).encode()).hexdigest()[:12]
    return Path(run_dir) / "warehouse" / f"sql-{digest}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_endpoint(run_dir: Path, dsn: str) -> str | None:
    """The live endpoint's URL for an embedded DSN, or None (no owner running, or a server DSN)."""
    if not is_embedded(dsn):
        return None
    path = announce_path(run_dir, dsn)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if info.get("pid") == os.getpid():
        return None  # this very process owns the engine: query it directly
    return info["url"] if _alive(int(info.get("pid", 0))) else None


def run_direct(dsn: str, database: str, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
    """Open the engine (or server) read-only and run ``sql`` (``{name:Type}`` parameters) in ``database``."""
    client = _client(dsn, settings={"readonly": 1})
    try:
        try:
            client.database = database
            r = client.query(sql, parameters=parameters or None)
        except Exception as e:
            raise _driver_error(e, "query") from e
        return QueryResult(list(r.column_names), [t.name for t in r.column_types], [list(x) for x in r.result_rows])
    finally:
        client.close()


def run_via(url: str, database: str, sql: str, parameters: dict[str, Any] | None = None, *,
            timeout_s: float = 300.0) -> QueryResult:
    try:
        resp = httpx.post(f"{url}/sql", json={"sql": sql, "database": database, "parameters": parameters or {}},
                          timeout=timeout_s)
    except httpx.HTTPError as e:
        raise WarehouseUnavailable(f"the warehouse's SQL endpoint {url} did not answer: {e}") from e
    body = resp.json()
    if resp.status_code != 200:
        raise QueryError(body.get("error", resp.text), code=body.get("code"))
    return QueryResult(body["columns"], body["types"], body["rows"], via=url)


def run_query(dsn: str, database: str, sql: str, parameters: dict[str, Any] | None = None, *,
              run_dir: Path) -> QueryResult:
    """Route: the owner's endpoint if a live process holds this chDB directory, else the engine."""
    url = find_endpoint(run_dir, dsn)
    if url is not None:
        return run_via(url, database, sql, parameters)
    try:
        return run_direct(dsn, database, sql, parameters)
    except WarehouseUnavailable as e:
        if not is_embedded(dsn):
            raise
        raise WarehouseUnavailable(
            f"{e}\nanother process holds this chDB directory and announces no SQL endpoint in "
            f"{announce_path(run_dir, dsn).parent} (a projector still starting? try again; is "
            f"QI_STACK_RUN_DIR the projector's?)") from e
