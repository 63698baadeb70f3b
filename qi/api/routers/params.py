"""Shared parameter types: ids with a bounded alphabet and length, page sizes, cursors."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

ID_PATTERN = r"^[A-Za-z0-9_.@+\-][A-Za-z0-9_.:@+\-]{0,199}$"
ID_HELP = "1-200 characters: letters, digits and _ . : @ + -"

TwinId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_HELP)]
SensorId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_HELP)]
CertificateId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_HELP)]
Cursor = Annotated[str | None, Query(pattern=ID_PATTERN, description="the `next_cursor` of the previous page")]
#: free text compared for equality; no control characters (Postgres text cannot hold NUL)
FilterText = Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


def limit_query(default: int = 50, maximum: int = 500):
    return Query(default, ge=1, le=maximum, description=f"page size, at most {maximum}")
