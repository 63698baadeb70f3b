"""Errors of the audit log (the verifier has its own ``VerificationError``)::

    AuditError
    ├── AuditStoreError      Postgres failed (``retriable``)
    ├── WriterConflict       another writer advanced the tree since we loaded it (reload, retry)
    ├── LogKeyError          the log's key pair is missing or unreadable (``path``)
    └── NotInLog             no leaf for that event id / size beyond the tree (``what``)
"""

from __future__ import annotations


class AuditError(Exception):
    """Root of the audit log's errors."""


class AuditStoreError(AuditError):
    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class WriterConflict(AuditError):
    def __init__(self, log_id: str, expected: int, found: int) -> None:
        super().__init__(f"log {log_id}: expected tree size {expected}, store has {found}")
        self.log_id, self.expected, self.found = log_id, expected, found


class LogKeyError(AuditError):
    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class NotInLog(AuditError):
    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what
