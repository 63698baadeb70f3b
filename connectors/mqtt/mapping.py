"""The bridge's mapping file: which MQTT topics become which events, and how.

TOML, validated on load; every error names the file, the line and the field
(see docs/bridge.md for the reference and examples/plant.toml for an example)::

    [bridge]
    client_id = "qi-bridge-plant1"        # stable: the broker keeps our session under it

    [[mapping]]
    filter = "plants/{site}/{twin_id}/{sensor_id}/reading"
    format = "json"                       # or "senml"
    [mapping.fields]                      # event field = where it comes from in the payload
    value = "v"
    unit = "u"
    [mapping.defaults]                    # constants for fields nobody else supplies
    quantity = "temperature"
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.mqtt.errors import MappingConfigError
from connectors.mqtt.filters import FilterSyntaxError, TopicFilter
from events.topics import FAMILIES

#: SensorReading fields a mapping must supply (event_id, times and metadata are the bridge's).
REQUIRED = ("twin_id", "sensor_id", "quantity", "value", "unit")
#: Fields a mapping may supply besides the required ones.
OPTIONAL = ("occurred_at", "source")
KNOWN = REQUIRED + OPTIONAL
#: Where a SenML field can come from: the resolved name (bn + n), the base name, the record's own name.
SENML_SOURCES = ("name", "bn", "n")
#: SenML supplies these itself (bu/u, bv+v, bt+t).
SENML_OWN = ("value", "unit", "occurred_at")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BridgeOptions(_Strict):
    client_id: str = Field("qi-bridge", min_length=1, max_length=23 * 4,
                           description="stable MQTT client id: the broker keeps the session under it")
    max_payload_bytes: int = Field(256 * 1024, ge=16, description="larger payloads are dead-lettered")
    source: str = Field("mqtt-bridge", min_length=1, description="`source` of events when the payload has none")


class Mapping(_Strict):
    name: str | None = None
    filter: str
    format: Literal["json", "senml"] = "json"
    kafka_topic: str = Field("readings", min_length=1, description="a topic family or a full topic name")
    key: tuple[str, ...] = Field(("twin_id", "sensor_id"), min_length=1,
                                 description="event fields joined with '/' into the Kafka key")
    fields: dict[str, str] = Field(default_factory=dict, description="event field = payload key (json) "
                                   "or one of name/bn/n (senml)")
    defaults: dict[str, str] = Field(default_factory=dict, description="event field = constant")
    time_unit: Literal["s", "ms"] = Field("s", description="unit of numeric timestamps in JSON payloads")

    @field_validator("filter")
    @classmethod
    def _filter_ok(cls, v: str) -> str:
        try:
            TopicFilter.parse(v)
        except FilterSyntaxError as e:
            raise ValueError(str(e)) from None
        return v

    @property
    def topic_filter(self) -> TopicFilter:
        return TopicFilter.parse(self.filter)

    @model_validator(mode="after")
    def _complete(self) -> Mapping:
        captured = set(self.topic_filter.fields)
        for where, names in (("fields", self.fields), ("defaults", self.defaults)):
            for f in names:
                if f not in KNOWN:
                    raise _FieldError(where, f, f"unknown event field; known: {', '.join(KNOWN)}")
        for f in captured:
            if f not in KNOWN:
                raise _FieldError("filter", None, f"captures {{{f}}}, which is not an event field; "
                                  f"known: {', '.join(KNOWN)}")
            if f in self.fields:
                raise _FieldError("fields", f, "also captured from the topic; pick one source")
        if self.format == "senml":
            for f, src in self.fields.items():
                if f in SENML_OWN:
                    raise _FieldError("fields", f, "SenML carries it itself (v/bv, u/bu, t/bt)")
                if src not in SENML_SOURCES:
                    raise _FieldError("fields", f, f"SenML source must be one of {', '.join(SENML_SOURCES)}")
        supplied = captured | set(self.fields) | set(self.defaults)
        if self.format == "senml":
            supplied |= {"value", "unit"}
        missing = [f for f in REQUIRED if f not in supplied]
        if missing:
            raise _FieldError("fields", missing[0], "no source: capture it in the filter, "
                              "map it in [mapping.fields] or give it in [mapping.defaults]")
        if self.kafka_topic not in FAMILIES and "." not in self.kafka_topic:
            raise _FieldError("kafka_topic", None, f"not a topic family ({', '.join(FAMILIES)}) "
                              "nor a full topic name")
        for k in self.key:
            if k not in KNOWN:
                raise _FieldError("key", None, f"{k!r} is not an event field")
        return self


class _FieldError(ValueError):
    """Raised inside validation to point at a sub-field; becomes a MappingConfigError."""

    def __init__(self, where: str, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.where, self.field, self.reason = where, field, reason


class MappingFile(_Strict):
    bridge: BridgeOptions = Field(default_factory=BridgeOptions)
    mapping: tuple[Mapping, ...] = Field(min_length=1)


def load_mapping(path: Path | str) -> MappingFile:
    """Read and validate a mapping file; raises :class:`MappingConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MappingConfigError(path, None, None, f"cannot read: {e}") from e
    return parse_mapping(text, path)


def parse_mapping(text: str, path: Path | str = "<mapping>") -> MappingFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise MappingConfigError(path, int(m.group(1)) if m else None, None, f"not valid TOML: {e}") from e
    try:
        return MappingFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(x) for x in err["loc"]]
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _FieldError):
            loc = [*loc, inner.where] + ([inner.field] if inner.field else [])
            reason = inner.reason
        else:
            reason = err["msg"]
        field = ".".join(loc)
        raise MappingConfigError(path, _line_of(text, loc), field, reason) from None


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best-effort line of a validation error's location ('mapping', '2', 'fields', 'unit')."""
    # Table each line belongs to, as a location prefix: [], ['bridge'], ['mapping', '1'], ['mapping', '1', 'fields'].
    counts: dict[str, int] = {}
    table: list[str] = []
    best: tuple[int, int] | None = None  # (matched length, line)
    for no, line in enumerate(text.splitlines(), start=1):
        h = _HEADER.match(line)
        if h:
            names = h.group(2).split(".")
            if h.group(1) == "[[":
                counts[names[0]] = counts.get(names[0], -1) + 1
                table = [names[0], str(counts[names[0]]), *names[1:]]
            elif names[0] in counts:
                table = [names[0], str(counts[names[0]]), *names[1:]]
            else:
                table = names
            here = table
        else:
            k = _KEY.match(line)
            if not k:
                continue
            here = [*table, k.group(1)]
        n = 0
        while n < min(len(here), len(loc)) and here[n] == loc[n]:
            n += 1
        if n == len(here) and (best is None or n > best[0]):
            best = (n, no)
    return best[1] if best else None
