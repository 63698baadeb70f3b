"""What the API reads and writes, one module per store; each has ``start()`` and ``close()``.

Every query is parameterised: user text is only ever a bound parameter, never SQL.
"""
