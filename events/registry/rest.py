"""A Confluent-compatible Schema Registry over the built-in registry's content-derived ids.

:class:`RegistryState` is the logic (no I/O but its JSON state file):
subjects and versions seeded from the ``schemas/`` catalogue, registration
with BACKWARD checking by :mod:`events.compat`, ids from
:func:`events.registry.builtin.content_id`, so a record written by any of
our processes (built-in registry, no network) decodes with the schema this
endpoint serves for its id. :func:`make_server` puts it behind the stdlib's
HTTP server; ``python -m events.registry.rest`` runs it (the local stack does).

Subjects follow TopicRecordNameStrategy (decision 0006): ``<topic>-qi.events.<Type>``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

from events.compat import problems
from events.registry.builtin import content_id
from events.schemas import SchemaCatalog, normalized_text, parse
from events.serde import subject as subject_name
from events.topics import TopicNames

log = structlog.get_logger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
LEVELS = ("NONE", "BACKWARD")

# Confluent's error codes
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_LEVEL = 42203
INCOMPATIBLE = 409


class RegistryHTTPError(Exception):
    """An answer other than 200, in Confluent's error format."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


@dataclass
class RegistryState:
    """Subjects -> ordered schema ids, id -> text, compatibility levels. Persisted to ``state_file``."""

    texts: dict[int, str] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    level: str = "BACKWARD"
    subject_levels: dict[str, str] = field(default_factory=dict)
    state_file: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- construction ----------------------------------------------------
    @classmethod
    def seeded(cls, catalog: SchemaCatalog, topics: TopicNames, state_file: Path | None = None) -> RegistryState:
        """Every catalogue version under its topic's subject (in version order), plus the saved state."""
        state = cls(state_file=state_file)
        for name in catalog.names():
            for sv in catalog.versions(name):
                state._add(subject_name(topics.topic(sv.topic_family), name), sv.text)
        if state_file is not None and state_file.exists():
            saved = json.loads(state_file.read_text())
            for sid, text in saved.get("texts", {}).items():
                state.texts.setdefault(int(sid), text)
            for subj, ids in saved.get("subjects", {}).items():
                mine = state.subjects.setdefault(subj, [])
                mine.extend(i for i in ids if i not in mine)
            state.level = saved.get("level", state.level)
            state.subject_levels.update(saved.get("subject_levels", {}))
        return state

    def _add(self, subject: str, text: str) -> tuple[int, bool]:
        sid = content_id(text)
        existing = self.texts.setdefault(sid, text)
        if existing != text:
            raise RegistryHTTPError(500, 50001, f"schema id collision on {sid}")
        versions = self.subjects.setdefault(subject, [])
        if sid in versions:
            return sid, False
        versions.append(sid)
        return sid, True

    def _save(self) -> None:
        if self.state_file is None:
            return
        body = {"texts": {str(k): v for k, v in self.texts.items()}, "subjects": self.subjects,
                "level": self.level, "subject_levels": self.subject_levels}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(self.state_file)

    # --- reads -------------------------------------------------------------
    def schema(self, sid: int) -> dict[str, Any]:
        try:
            return {"schema": self.texts[sid]}
        except KeyError:
            raise RegistryHTTPError(404, SCHEMA_NOT_FOUND, f"Schema {sid} not found") from None

    def versions(self, subject: str) -> list[int]:
        try:
            return list(range(1, len(self.subjects[subject]) + 1))
        except KeyError:
            raise RegistryHTTPError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.") from None

    def version(self, subject: str, version: str) -> dict[str, Any]:
        ids = self.subjects.get(subject)
        if not ids:
            raise RegistryHTTPError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        if version in ("latest", "-1"):
            n = len(ids)
        else:
            try:
                n = int(version)
            except ValueError:
                raise RegistryHTTPError(422, INVALID_VERSION, f"The specified version '{version}' is not valid.") from None
            if not 1 <= n <= len(ids):
                raise RegistryHTTPError(404, VERSION_NOT_FOUND, f"Version {version} not found.")
        sid = ids[n - 1]
        return {"subject": subject, "version": n, "id": sid, "schema": self.texts[sid]}

    def level_of(self, subject: str | None) -> str:
        return self.subject_levels.get(subject, self.level) if subject else self.level

    # --- writes ------------------------------------------------------------
    def register(self, subject: str, schema_text: str) -> int:
        text = _normalize(schema_text)
        with self._lock:
            sid = content_id(text)
            ids = self.subjects.get(subject, [])
            if sid not in ids and ids and self.level_of(subject) == "BACKWARD":
                found = problems(json.loads(text), json.loads(self.texts[ids[-1]]))
                if found:
                    raise RegistryHTTPError(
                        409, INCOMPATIBLE,
                        f"Schema being registered is incompatible with an earlier schema for subject '{subject}': "
                        + "; ".join(found),
                    )
            sid, created = self._add(subject, text)
            if created:
                self._save()
                log.info("registry.registered", subject=subject, id=sid, version=len(self.subjects[subject]))
            return sid

    def lookup(self, subject: str, schema_text: str) -> dict[str, Any]:
        text = _normalize(schema_text)
        ids = self.subjects.get(subject)
        if not ids:
            raise RegistryHTTPError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        sid = content_id(text)
        if sid not in ids:
            raise RegistryHTTPError(404, SCHEMA_NOT_FOUND, "Schema not found")
        return self.version(subject, str(ids.index(sid) + 1))

    def compatible(self, subject: str, version: str, schema_text: str) -> dict[str, Any]:
        text = _normalize(schema_text)
        if subject not in self.subjects:
            return {"is_compatible": True}
        older = self.version(subject, version)["schema"]
        found = problems(json.loads(text), json.loads(older)) if self.level_of(subject) == "BACKWARD" else []
        return {"is_compatible": not found, "messages": found}

    def set_level(self, subject: str | None, level: str) -> dict[str, str]:
        if level not in LEVELS:
            raise RegistryHTTPError(422, INVALID_LEVEL, f"Invalid compatibility level {level}; supported: {', '.join(LEVELS)}")
        with self._lock:
            if subject:
                self.subject_levels[subject] = level
            else:
                self.level = level
            self._save()
        return {"compatibility": level}


def _normalize(schema_text: str) -> str:
    """The text our ids are computed from; 422 if it is not an Avro record/enum/... schema."""
    try:
        raw = json.loads(schema_text)
        parse(raw)
    except Exception as e:  # json and fastavro raise several unrelated types for bad input
        raise RegistryHTTPError(422, INVALID_SCHEMA, f"Invalid schema: {e}") from e
    return normalized_text(raw)


# --- HTTP ------------------------------------------------------------------
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/schemas/ids/(\d+)$"), "get_schema"),
    ("GET", re.compile(r"^/schemas/ids/(\d+)/schema$"), "get_schema_raw"),
    ("GET", re.compile(r"^/schemas/ids/(\d+)/versions$"), "get_schema_versions"),
    ("GET", re.compile(r"^/schemas/types$"), "get_types"),
    ("GET", re.compile(r"^/subjects$"), "get_subjects"),
    ("GET", re.compile(r"^/subjects/([^/]+)/versions$"), "get_versions"),
    ("GET", re.compile(r"^/subjects/([^/]+)/versions/([^/]+)$"), "get_version"),
    ("GET", re.compile(r"^/subjects/([^/]+)/versions/([^/]+)/schema$"), "get_version_raw"),
    ("POST", re.compile(r"^/subjects/([^/]+)/versions$"), "post_version"),
    ("POST", re.compile(r"^/subjects/([^/]+)$"), "post_lookup"),
    ("POST", re.compile(r"^/compatibility/subjects/([^/]+)/versions/([^/]+)$"), "post_compat"),
    ("GET", re.compile(r"^/config$"), "get_config"),
    ("PUT", re.compile(r"^/config$"), "put_config"),
    ("GET", re.compile(r"^/config/([^/]+)$"), "get_config"),
    ("PUT", re.compile(r"^/config/([^/]+)$"), "put_config"),
    ("GET", re.compile(r"^/$"), "get_root"),
]


class _Api:
    """Route handlers: (path args, JSON body) -> JSON answer."""

    def __init__(self, state: RegistryState) -> None:
        self.state = state

    def get_root(self, body: Any) -> Any:
        return {}

    def get_schema(self, sid: str, body: Any) -> Any:
        return self.state.schema(int(sid))

    def get_schema_raw(self, sid: str, body: Any) -> Any:
        return json.loads(self.state.schema(int(sid))["schema"])

    def get_schema_versions(self, sid: str, body: Any) -> Any:
        self.state.schema(int(sid))
        return [{"subject": s, "version": ids.index(int(sid)) + 1}
                for s, ids in sorted(self.state.subjects.items()) if int(sid) in ids]

    def get_types(self, body: Any) -> Any:
        return ["AVRO"]

    def get_subjects(self, body: Any) -> Any:
        return sorted(self.state.subjects)

    def get_versions(self, subject: str, body: Any) -> Any:
        return self.state.versions(subject)

    def get_version(self, subject: str, version: str, body: Any) -> Any:
        return self.state.version(subject, version)

    def get_version_raw(self, subject: str, version: str, body: Any) -> Any:
        return json.loads(self.state.version(subject, version)["schema"])

    def post_version(self, subject: str, body: Any) -> Any:
        return {"id": self.state.register(subject, _schema_of(body))}

    def post_lookup(self, subject: str, body: Any) -> Any:
        return self.state.lookup(subject, _schema_of(body))

    def post_compat(self, subject: str, version: str, body: Any) -> Any:
        return self.state.compatible(subject, version, _schema_of(body))

    def get_config(self, subject: str | None = None, body: Any = None) -> Any:
        return {"compatibilityLevel": self.state.level_of(subject)}

    def put_config(self, subject: str | None = None, body: Any = None) -> Any:
        level = body.get("compatibility") if isinstance(body, dict) else None
        return self.state.set_level(subject, str(level))


def _schema_of(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise RegistryHTTPError(422, INVALID_SCHEMA, "body must be {\"schema\": \"<schema JSON text>\"}")
    if body.get("schemaType", "AVRO") != "AVRO":
        raise RegistryHTTPError(422, INVALID_SCHEMA, f"unsupported schemaType {body['schemaType']}; only AVRO")
    if body.get("references"):
        raise RegistryHTTPError(422, INVALID_SCHEMA, "schema references are not supported")
    return body["schema"]


def make_server(state: RegistryState, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) answering the Confluent REST API from ``state``."""
    api = _Api(state)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self, method: str) -> None:
            path = urlsplit(self.path).path.rstrip("/") or "/"
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
                for m, pattern, name in _ROUTES:
                    match = pattern.match(path)
                    if match and m == method:
                        args = [unquote(a) for a in match.groups()]
                        self._answer(200, getattr(api, name)(*args, body))
                        return
                raise RegistryHTTPError(404, 404, f"no such endpoint: {method} {path}")
            except RegistryHTTPError as e:
                self._answer(e.status, {"error_code": e.error_code, "message": e.message})
            except ValueError as e:
                self._answer(400, {"error_code": 400, "message": f"bad request: {e}"})

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("registry.request", line=format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Confluent-compatible Schema Registry over schemas/")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="JSON file keeping registrations")
    parser.add_argument("--topic-prefix", default="", help="prefix of the topics whose subjects are seeded")
    args = parser.parse_args(argv)
    args.state.parent.mkdir(parents=True, exist_ok=True)
    state = RegistryState.seeded(SchemaCatalog.load(), TopicNames(args.topic_prefix), args.state)
    server = make_server(state, args.host, args.port)
    log.info("registry.listening", host=args.host, port=args.port, subjects=len(state.subjects))
    server.serve_forever()


if __name__ == "__main__":
    main()
