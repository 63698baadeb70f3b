"""MQTT topic filters with named captures.

A filter is MQTT levels separated by ``/``: a literal, ``+`` (any one level),
``{name}`` (any one level, captured as field ``name``) or a final ``#`` (any
remaining levels). ``plants/{site}/{twin_id}/{sensor_id}/reading`` subscribes
to ``plants/+/+/+/reading`` and captures three fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CAPTURE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class FilterSyntaxError(ValueError):
    """A filter that is not valid MQTT (with captures)."""


@dataclass(frozen=True)
class TopicFilter:
    text: str
    levels: tuple[str, ...]          # "+", "#", a literal, or "" for a capture
    captures: tuple[str | None, ...]  # field name per level, None when not captured

    @classmethod
    def parse(cls, text: str) -> TopicFilter:
        if not text:
            raise FilterSyntaxError("empty topic filter")
        levels, captures = [], []
        parts = text.split("/")
        for i, part in enumerate(parts):
            m = _CAPTURE.match(part)
            if m:
                if m.group(1) in captures:
                    raise FilterSyntaxError(f"field {m.group(1)!r} captured twice")
                levels.append("+")
                captures.append(m.group(1))
                continue
            if part == "#" and i != len(parts) - 1:
                raise FilterSyntaxError("'#' must be the last level")
            if part not in ("+", "#") and ("+" in part or "#" in part or "{" in part or "}" in part):
                raise FilterSyntaxError(f"level {part!r} mixes wildcards or braces with text")
            levels.append(part)
            captures.append(None)
        return cls(text, tuple(levels), tuple(captures))

    @property
    def subscription(self) -> str:
        """The plain MQTT filter to subscribe to."""
        return "/".join(self.levels)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(c for c in self.captures if c)

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured fields if ``topic`` matches, else None."""
        parts = topic.split("/")
        out: dict[str, str] = {}
        for i, level in enumerate(self.levels):
            if level == "#":
                return out
            if i >= len(parts):
                return None
            if level == "+":
                name = self.captures[i]
                if name is not None:
                    if not parts[i].strip():
                        return None  # an empty level cannot be an id
                    out[name] = parts[i]
            elif level != parts[i]:
                return None
        return out if len(parts) == len(self.levels) else None
