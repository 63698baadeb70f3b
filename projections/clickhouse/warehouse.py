"""The warehouse writer: one ClickHouse database, migrated, written in idempotent column batches.

Works with ``chdb:///dir`` (in-process engine; one process per directory) and
``http(s)://host:8123`` (a server) through clickhouse-connect's one client API.

Idempotence: every fact table is a ReplacingMergeTree keyed by ``event_id``
(docs/decisions/0060-warehouse-idempotence.md), and each insert carries a
deduplication token derived from the batch's offset ranges, so a batch
redelivered with the same boundaries adds no part at all. Positions are
written after the rows, so a crash between the two only redelivers rows that
collapse under ``FINAL``.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from projections.clickhouse.errors import QueryError, WarehouseUnavailable
from projections.clickhouse.migrations import MIGRATIONS, MIGRATIONS_TABLE
from projections.clickhouse.rows import WarehouseBatch

log = structlog.get_logger(__name__)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Settings of every fact-table insert. ``optimize_on_insert = 0``: the engine does not collapse
#: duplicate keys inside the inserted block (the ReplacingMergeTree merge it would run on insert);
#: ``FINAL`` and background merges still keep one row per event, which is the guarantee (0060), and
#: the block's sort is stable, so the same row survives (docs/decisions/0059).
INSERT_SETTINGS = {"optimize_on_insert": "0"}


def _client(dsn: str, **kwargs: Any):
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError

    try:
        return clickhouse_connect.get_client(dsn=dsn, **kwargs)
    except (OperationalError, ProgrammingError) as e:  # server down / chDB path held elsewhere
        raise WarehouseUnavailable(f"cannot open ClickHouse at {redact(dsn)}: {e}") from e


def redact(dsn: str) -> str:
    """The DSN without a password."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", dsn)


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def _driver_error(e: Exception, what: str) -> Exception:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    if isinstance(e, OperationalError):
        return WarehouseUnavailable(f"{what}: {e}")
    if isinstance(e, DatabaseError):
        m = re.search(r"Code: (\d+)", str(e))
        return QueryError(f"{what}: {e}", code=int(m.group(1)) if m else None)
    return e


class ClickHouseWarehouse:
    """Writer and reader of one warehouse database. ``start()`` connects and migrates."""

    def __init__(self, dsn: str, database: str = "qi", *, projection: str = "clickhouse") -> None:
        if not _IDENT.match(database):
            raise ValueError(f"not a valid database name: {database!r}")
        self.dsn = dsn
        self.database = database
        self.projection = projection
        self._client: Any = None

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._client is not None:
            return
        self._client = _client(self.dsn)
        self.migrate()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("warehouse not started")
        return self._client

    def migrate(self) -> list[int]:
        """Apply the migrations this database has not seen yet; returns the versions applied."""
        db = self.database
        self._command(f"CREATE DATABASE IF NOT EXISTS {db}")
        self._command(MIGRATIONS_TABLE.format(db=db))
        done = {row[0] for row in self._query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows}
        applied = []
        for m in MIGRATIONS:
            if m.version in done:
                continue
            for statement in m.statements:
                self._command(statement.format(db=db))
            self.client.insert(f"{db}.schema_migrations", [[m.version], [m.name]],
                               column_names=["version", "name"], column_oriented=True)
            applied.append(m.version)
            log.info("warehouse.migrated", database=db, version=m.version, name=m.name)
        return applied

    def promote(self, live: str) -> str | None:
        """Blue/green: this (rebuilt) database's tables become ``live``'s, one atomic
        ``EXCHANGE TABLES`` per table; returns the database now holding the old tables (drop it
        once nobody reads it) or None when there was no live database."""
        from projections.clickhouse.migrations import FACT_TABLES
        from projections.clickhouse.sink import swap_databases

        tables = [*FACT_TABLES, "projection_positions", "schema_migrations"]
        old = f"{live}__old"
        result = swap_databases(self.client, self.database, live, tables, old,
                                lambda c, q: self._command(q), lambda c, q: self._query(q).result_rows)
        self.database = live
        return result

    def drop(self) -> None:
        """Drop the whole database (a rebuild's old target, a test's scratch)."""
        self._command(f"DROP DATABASE IF EXISTS {self.database}")

    # --- writing -------------------------------------------------------------------------------
    def write(self, batch: WarehouseBatch) -> int:
        """Insert the batch's rows (one Arrow block per table), then its positions. Returns rows."""
        db = self.database
        rows = 0
        for table, cols in batch.tables.items():
            if not len(cols):
                continue
            try:
                self.client.insert_arrow(f"{db}.{table}", cols.arrow(),
                                         settings={"insert_deduplication_token": batch.dedup_token(table),
                                                   **INSERT_SETTINGS})
            except Exception as e:
                raise _driver_error(e, f"insert into {db}.{table}") from e
            rows += len(cols)
        self.save_positions(batch.positions)
        return rows

    def save_positions(self, positions: dict[tuple[str, int], int]) -> None:
        if not positions:
            return
        items = sorted(positions.items())
        data = [[self.projection] * len(items), [t for (t, _), _ in items], [p for (_, p), _ in items],
                [o for _, o in items]]
        try:
            self.client.insert(f"{self.database}.projection_positions", data,
                               column_names=["projection_name", "topic", "partition", "next_offset"],
                               column_oriented=True)
        except Exception as e:
            raise _driver_error(e, "save positions") from e

    def positions(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> next offset to read, as stored with the rows."""
        result = self._query(
            f"SELECT topic, partition, max(next_offset) FROM {self.database}.projection_positions "
            "WHERE projection_name = {p:String} GROUP BY topic, partition", parameters={"p": self.projection})
        return {(t, int(p)): int(o) for t, p, o in result.result_rows}

    # --- reading -------------------------------------------------------------------------------
    def query(self, sql: str, parameters: dict[str, Any] | None = None):
        """Run a query (default database: this one). Returns clickhouse-connect's QueryResult."""
        return self._query(sql, parameters=parameters, use_db=True)

    def _query(self, sql: str, parameters: dict[str, Any] | None = None, *, use_db: bool = False):
        try:
            if use_db:
                self.client.database = self.database
            return self.client.query(sql, parameters=parameters)
        except Exception as e:
            raise _driver_error(e, "query") from e

    def _command(self, sql: str) -> None:
        try:
            self.client.command(sql)
        except Exception as e:
            raise _driver_error(e, sql.split("(")[0].strip()) from e
