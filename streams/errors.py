"""Errors of the stream processors.

Every error here derives from :class:`StreamsError`; the runner branches on
the class and on ``retriable``, never on message text::

    StreamsError
    ├── RetriableError       a dependency is down or slow: retry the same batch with backoff
    │   └── SinkUnavailable  a read-model store (Postgres, ClickHouse, Redis) did not answer
    └── RunnerError          the runner cannot go on (no such topic, cannot join the group)
"""

from __future__ import annotations


class StreamsError(Exception):
    """Root of every error raised by the ``streams`` package."""

    retriable: bool = False


class RetriableError(StreamsError):
    """A transient failure: the runner retries the same batch, with backoff, until it succeeds."""

    retriable = True

    def __init__(self, message: str, *, dependency: str = "") -> None:
        super().__init__(message)
        self.dependency = dependency


class SinkUnavailable(RetriableError):
    """A sink could not be written; raised by projections so the batch is retried."""


class RunnerError(StreamsError):
    """The runner cannot continue; the process should exit non-zero and be restarted."""
