"""Topic names: ``<prefix>qi.<family>.v1``, one topic per family of events."""

from __future__ import annotations

#: Topic families of ARCHITECTURE.md, with the version of their topic.
FAMILIES: dict[str, int] = {
    "twins": 1,
    "issuers": 1,
    "certificates": 1,
    "readings": 1,
    "validations": 1,
    "scores": 1,
    "alerts": 1,
    "audit": 1,
    "deadletter": 1,
}


class TopicNames:
    """Resolves topic families to the topic names of one deployment."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def topic(self, family: str) -> str:
        try:
            version = FAMILIES[family]
        except KeyError:
            raise ValueError(f"unknown topic family {family!r}; known: {', '.join(FAMILIES)}") from None
        return f"{self.prefix}qi.{family}.v{version}"

    def all(self) -> dict[str, str]:
        """family -> topic name"""
        return {f: self.topic(f) for f in FAMILIES}

    def family_of(self, topic: str) -> str | None:
        return next((f for f, t in self.all().items() if t == topic), None)

    def resolve(self, name: str) -> str:
        """A family name (``twins``) or a full topic name, as a topic name."""
        return self.topic(name) if name in FAMILIES else name
