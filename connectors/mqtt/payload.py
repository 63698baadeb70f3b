"""Payloads into readings: JSON objects and SenML (RFC 8428) JSON packs.

A :class:`Reading` holds the event fields a payload supplied; the converter adds
topic captures and defaults. Anything unusable raises :class:`ConversionError`
with its reason; a pack with one bad record is refused whole (one MQTT message,
one acknowledgement: it is converted entirely or dead-lettered entirely).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from connectors.mqtt.errors import ConversionError, Reason
from connectors.mqtt.mapping import Mapping

#: SenML: resolved times below 2**28 are relative to now (RFC 8428, section 4.5.3).
_SENML_RELATIVE = 2**28

Reading = dict[str, Any]


def _reject_constant(name: str) -> float:
    raise ConversionError(Reason.NON_FINITE, f"{name} is not a finite number")


def load_json(payload: bytes) -> Any:
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except ConversionError:
        raise
    except (UnicodeDecodeError, ValueError) as e:
        raise ConversionError(Reason.BAD_JSON, f"not JSON: {e}") from None


def number(value: Any, what: str) -> float:
    """A finite float, or the reason it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConversionError(Reason.WRONG_TYPE, f"{what} must be a number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise ConversionError(Reason.NON_FINITE, f"{what} is not a finite number ({value!r})")
    return f


def text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConversionError(Reason.WRONG_TYPE, f"{what} must be a string, got {type(value).__name__}")
    s = str(value)
    if not s.strip():
        raise ConversionError(Reason.MISSING_FIELD, f"{what} is empty")
    return s


def timestamp(value: Any, what: str, unit: str = "s") -> datetime:
    """Epoch seconds (or ms) or an ISO 8601 string, as an aware UTC datetime."""
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise ConversionError(Reason.WRONG_TYPE, f"{what} is not an ISO 8601 time: {value!r}") from None
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    secs = number(value, what) / (1000.0 if unit == "ms" else 1.0)
    try:
        return datetime.fromtimestamp(secs, UTC)
    except (OverflowError, OSError, ValueError):
        raise ConversionError(Reason.WRONG_TYPE, f"{what} is out of range: {value!r}") from None


def json_readings(payload: bytes, mapping: Mapping) -> list[Reading]:
    """One JSON object into one reading (fields named by the mapping)."""
    doc = load_json(payload)
    if not isinstance(doc, dict):
        raise ConversionError(Reason.WRONG_TYPE, f"payload must be a JSON object, got {type(doc).__name__}")
    out: Reading = {}
    for field, key in mapping.fields.items():
        if key not in doc or doc[key] is None:
            if field in mapping.defaults or field in ("occurred_at", "source"):
                continue
            raise ConversionError(Reason.MISSING_FIELD, f"payload has no {key!r} (for {field})")
        out[field] = _typed(field, doc[key], key, mapping.time_unit)
    return [out]


def _typed(field: str, value: Any, key: str, time_unit: str) -> Any:
    if field == "value":
        return number(value, key)
    if field == "occurred_at":
        return timestamp(value, key, time_unit)
    return text(value, key)


def senml_readings(payload: bytes, mapping: Mapping, now: datetime) -> list[Reading]:
    """A SenML pack into one reading per measurement, base values applied (RFC 8428 section 4)."""
    pack = load_json(payload)
    if isinstance(pack, dict):
        pack = [pack]
    if not isinstance(pack, list) or not pack:
        raise ConversionError(Reason.WRONG_TYPE, "a SenML pack must be a non-empty JSON array of objects")
    bn, bt, bu, bv = "", 0.0, None, 0.0
    out: list[Reading] = []
    for i, rec in enumerate(pack):
        where = f"record {i}"
        if not isinstance(rec, dict):
            raise ConversionError(Reason.WRONG_TYPE, f"{where} is not an object")
        if "bn" in rec:
            bn = text(rec["bn"], f"{where} bn")
        if "bt" in rec:
            bt = number(rec["bt"], f"{where} bt")
        if "bu" in rec:
            bu = text(rec["bu"], f"{where} bu")
        if "bv" in rec:
            bv = number(rec["bv"], f"{where} bv")
        if "v" not in rec:
            if any(k in rec for k in ("vs", "vb", "vd", "s")):
                raise ConversionError(Reason.WRONG_TYPE, f"{where} has no numeric value (v); "
                                      "string, boolean and data values are not readings")
            if "n" in rec or "u" in rec or "t" in rec:
                raise ConversionError(Reason.MISSING_FIELD, f"{where} has no value (v)")
            continue  # a record carrying only base fields
        n = text(rec["n"], f"{where} n") if "n" in rec else ""
        name = bn + n
        if not name:
            raise ConversionError(Reason.MISSING_FIELD, f"{where} has no name (bn + n is empty)")
        value = bv + number(rec["v"], f"{where} v")
        if not math.isfinite(value):
            raise ConversionError(Reason.NON_FINITE, f"{where} bv + v is not finite")
        unit = text(rec["u"], f"{where} u") if "u" in rec else bu
        t = bt + (number(rec["t"], f"{where} t") if "t" in rec else 0.0)
        if abs(t) < _SENML_RELATIVE:
            at = datetime.fromtimestamp(now.timestamp() + t, UTC)
        else:
            at = timestamp(t, f"{where} time")
        reading: Reading = {"value": value, "occurred_at": at}
        if unit is not None:
            reading["unit"] = unit
        parts = {"name": name, "bn": bn, "n": n}
        for field, src in mapping.fields.items():
            if not parts[src]:
                raise ConversionError(Reason.MISSING_FIELD, f"{where} has no {src} (for {field})")
            reading[field] = parts[src]
        out.append(reading)
    if not out:
        raise ConversionError(Reason.MISSING_FIELD, "the SenML pack holds no measurement")
    return out
