"""The registry interface."""

from __future__ import annotations

from typing import Protocol


class SchemaRegistry(Protocol):
    """Maps (subject, schema text) to a schema id and a schema id back to its text.

    Subjects follow Confluent's TopicRecordNameStrategy: ``<topic>-<record full
    name>``, because one topic carries several event types.
    """

    async def register(self, subject: str, schema_text: str) -> int:
        """Register (or look up) a schema under a subject and return its id."""
        ...

    async def schema_text(self, schema_id: int) -> str:
        """The schema text for an id; :class:`~events.errors.UnknownSchemaError` if none."""
        ...

    async def close(self) -> None: ...
