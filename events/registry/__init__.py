"""Schema registries: where schema ids come from.

:class:`~events.registry.base.SchemaRegistry` is the one small interface; the
built-in registry serves the embedded default, the Confluent client any
Confluent-compatible registry (Confluent, Karapace, Apicurio, Redpanda).
"""

from events.registry.base import SchemaRegistry
from events.registry.builtin import BuiltinRegistry
from events.registry.confluent import ConfluentRegistry

__all__ = ["BuiltinRegistry", "ConfluentRegistry", "SchemaRegistry"]
