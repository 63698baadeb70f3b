"""BACKWARD compatibility: can the newest schema read everything written before?

Implements the reader/writer rules of the Avro specification's "Schema
Resolution" section over raw JSON schemas, the same rules a Confluent Schema
Registry applies in BACKWARD mode, plus one stricter rule: a change of logical
type (say timestamp-millis to timestamp-micros) is reported, because the bytes
would still decode but their meaning would change.
"""

from __future__ import annotations

from typing import Any

from events.errors import CompatibilityError
from events.schemas import NAMESPACE, SchemaCatalog

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
#: writer type -> reader types it may be promoted to
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}

Schema = dict[str, Any]


class _Names:
    """Named types (records, enums, fixed) of one schema, by full name."""

    def __init__(self) -> None:
        self.types: dict[str, Schema] = {}

    def canon(self, t: Any, ns: str) -> Schema:
        if isinstance(t, list):
            return {"type": "union", "branches": [self.canon(b, ns) for b in t]}
        if isinstance(t, str):
            if t in _PRIMITIVES:
                return {"type": t}
            full = t if "." in t else f"{ns}.{t}"
            if full not in self.types:
                raise KeyError(f"undefined named type {t}")
            return self.types[full]
        kind = t["type"]
        if kind in ("record", "enum", "fixed"):
            node_ns = t.get("namespace", ns)
            full = t["name"] if "." in t["name"] else f"{node_ns}.{t['name']}"
            node = dict(t, fullname=full)
            self.types[full] = node
            if kind == "record":
                node["fields"] = [
                    dict(f, type=self.canon(f["type"], node_ns)) for f in t["fields"]
                ]
            return node
        if kind == "array":
            return {"type": "array", "items": self.canon(t["items"], ns)}
        if kind == "map":
            return {"type": "map", "values": self.canon(t["values"], ns)}
        if isinstance(kind, (dict, list)) or kind not in _PRIMITIVES:
            # {"type": "string"} style nesting or {"type": {...}}
            inner = self.canon(kind, ns)
            return dict(inner, **{k: v for k, v in t.items() if k != "type"})
        return dict(t)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def problems(reader: Schema, writer: Schema) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty: compatible)."""
    r = _Names().canon(reader, reader.get("namespace", NAMESPACE))
    w = _Names().canon(writer, writer.get("namespace", NAMESPACE))
    out: list[str] = []
    _check(r, w, reader.get("name", "$"), out, set())
    return out


def _check(r: Schema, w: Schema, path: str, out: list[str], seen: set[tuple[int, int]]) -> None:
    key = (id(r), id(w))
    if key in seen:  # recursive types: already being checked higher up
        return
    seen.add(key)
    rt, wt = r["type"], w["type"]

    if wt == "union":
        for branch in w["branches"]:
            sub: list[str] = []
            _check(r, branch, f"{path}<{_label(branch)}>", sub, seen)
            out.extend(sub)
        return
    if rt == "union":
        for branch in r["branches"]:
            sub = []
            _check(branch, w, path, sub, set(seen))
            if not sub:
                return
        out.append(f"{path}: writer type {_label(w)} matches no branch of reader union {_label(r)}")
        return

    if rt in _PRIMITIVES and wt in _PRIMITIVES:
        if rt != wt and rt not in _PROMOTIONS.get(wt, ()):
            out.append(f"{path}: type changed from {wt} to {rt}")
        elif r.get("logicalType") != w.get("logicalType"):
            out.append(
                f"{path}: logical type changed from {w.get('logicalType')} to {r.get('logicalType')}"
            )
        return
    if rt != wt:
        out.append(f"{path}: type changed from {_label(w)} to {_label(r)}")
        return

    if rt == "record":
        if not _names_match(r, w):
            out.append(f"{path}: record name changed from {w['fullname']} to {r['fullname']}")
            return
        wfields = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            wf = wfields.get(f["name"]) or next(
                (wfields[a] for a in f.get("aliases", []) if a in wfields), None
            )
            if wf is None:
                if "default" not in f:
                    out.append(f"{path}.{f['name']}: new field without a default")
                continue
            _check(f["type"], wf["type"], f"{path}.{f['name']}", out, seen)
    elif rt == "enum":
        if not _names_match(r, w):
            out.append(f"{path}: enum name changed from {w['fullname']} to {r['fullname']}")
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            out.append(f"{path}: enum symbols removed without a default: {missing}")
    elif rt == "fixed":
        if not _names_match(r, w) or r["size"] != w["size"]:
            out.append(f"{path}: fixed changed from {w['fullname']}[{w['size']}] to {r['fullname']}[{r['size']}]")
    elif rt == "array":
        _check(r["items"], w["items"], f"{path}[]", out, seen)
    elif rt == "map":
        _check(r["values"], w["values"], f"{path}{{}}", out, seen)


def _names_match(r: Schema, w: Schema) -> bool:
    aliases = {_short(a) for a in r.get("aliases", [])}
    return _short(r["fullname"]) == _short(w["fullname"]) or _short(w["fullname"]) in aliases


def _label(t: Schema) -> str:
    if t["type"] == "union":
        return "[" + ", ".join(_label(b) for b in t["branches"]) + "]"
    return t.get("fullname") or t["type"]


def check_catalog(catalog: SchemaCatalog) -> list[CompatibilityError]:
    """Every violation in the catalogue: each version against every earlier one."""
    errors = []
    for name in catalog.names():
        versions = catalog.versions(name)
        for i, newer in enumerate(versions):
            for older in versions[:i]:
                found = problems(newer.raw, older.raw)
                if found:
                    errors.append(CompatibilityError(name, newer.version, older.version, found))
    return errors
