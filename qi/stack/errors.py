"""Errors of the local stack."""

from __future__ import annotations


class StackError(Exception):
    """The local stack could not be started, checked or stopped."""

    def __init__(self, message: str, *, service: str | None = None, log_tail: str | None = None) -> None:
        text = f"{service}: {message}" if service else message
        if log_tail:
            text += "\n--- last lines of its log ---\n" + log_tail
        super().__init__(text)
        self.service = service
        self.log_tail = log_tail


class ServiceBinaryMissing(StackError):
    """A server binary is not installed: the message says which package provides it."""
