"""QI Stream's composition root: configuration, the local stack, wiring and the ``qi`` CLI.

Domain code lives in ``events/``, ``streams/``, ``projections/`` and
``connectors/``; this package only reads configuration at the edge and builds
and connects those components (docs/decisions/0001-composition-root.md).
"""
