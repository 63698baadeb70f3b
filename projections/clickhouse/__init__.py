"""The analysts' warehouse in ClickHouse (embedded chDB or a server).

``migrations``   versioned DDL of the warehouse tables
``rows``         events -> columnar rows per table (pure)
``warehouse``    the writer: connect, migrate, idempotent batch inserts, stored positions
``projector``    the batch-runner processor that feeds the warehouse
``query``        analysts' queries: through the projector's endpoint or straight to the engine
``query_server`` the loopback SQL endpoint served by the process that owns a chDB directory
"""
