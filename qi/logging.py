"""structlog setup: JSON lines in production, readable lines in a terminal.

Libraries that log through the standard library (aiokafka, faust, mode) go through the same
renderer, so a worker's log under ``qi up`` is JSON lines only. ``LogSettings.fields`` (set by the
supervisor: worker and instance) are on every line, including lines from other threads (paho's),
which context variables do not reach.
"""

from __future__ import annotations

import logging
import sys

import structlog

from qi.config import LogSettings


def configure_logging(settings: LogSettings) -> None:
    """Configure structlog and the stdlib root logger (call once, at the edge)."""
    level = getattr(logging, settings.level.upper())
    as_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    fields = dict(settings.fields)

    def add_fields(_logger: object, _method: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
        for k, v in fields.items():
            event_dict.setdefault(k, v)
        return event_dict

    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, add_fields, structlog.processors.add_log_level, stamp,
                    structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the stdlib: keep them quiet unless asked, and render them alike.
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.contextvars.merge_contextvars, add_fields, structlog.stdlib.add_log_level,
                               structlog.stdlib.add_logger_name, stamp],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info, renderer],
        ))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))
