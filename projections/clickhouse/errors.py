"""Errors of the warehouse; callers branch on the class and attributes, never on text::

    WarehouseError
    ├── WarehouseUnavailable  the engine/server cannot be reached or opened (retriable)
    └── QueryError            ClickHouse refused a query (``code``: ClickHouse error code or None)
"""

from __future__ import annotations


class WarehouseError(Exception):
    """Root of every error raised by ``projections.clickhouse``."""

    retriable: bool = False


class WarehouseUnavailable(WarehouseError):
    """The ClickHouse server did not answer, or the chDB directory is held by another process."""

    retriable = True


class QueryError(WarehouseError):
    """A query failed in ClickHouse (syntax, unknown table, readonly violation...)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
