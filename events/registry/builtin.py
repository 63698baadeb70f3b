"""The built-in registry of the embedded default: ids derived from content.

A schema's id is the first 31 bits of the SHA-256 of its normalized text
(never 0). Ids are therefore the same in every process, on every machine and
in every run, with no registry service and no shared state; any process that
has the ``schemas/`` directory can decode any record written by another.
Collisions are checked when the catalogue is loaded.
"""

from __future__ import annotations

import hashlib

from events.errors import SchemaError, UnknownSchemaError
from events.schemas import SchemaCatalog


def content_id(schema_text: str) -> int:
    digest = hashlib.sha256(schema_text.encode()).digest()
    return (int.from_bytes(digest[:4], "big") & 0x7FFFFFFF) or 1


class BuiltinRegistry:
    """Knows every schema version in the catalogue, plus any registered at run time."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self._texts: dict[int, str] = {}
        for sv in catalog:
            self._add(sv.text)

    def _add(self, text: str) -> int:
        sid = content_id(text)
        existing = self._texts.setdefault(sid, text)
        if existing != text:
            raise SchemaError(f"schema id collision on {sid}; change the schema's doc to resolve it")
        return sid

    async def register(self, subject: str, schema_text: str) -> int:
        return self._add(schema_text)

    async def schema_text(self, schema_id: int) -> str:
        try:
            return self._texts[schema_id]
        except KeyError:
            raise UnknownSchemaError(schema_id) from None

    async def close(self) -> None:
        return None
