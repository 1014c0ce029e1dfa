"""structlog set-up: one JSON object per line for journald, a readable console on a terminal.

Logs go to stderr so that commands which print results (`status`, `verify`) keep stdout clean.
Every event carries an ISO timestamp, the level and the event name, plus the process-wide
fields given to `configure_logging` (a daemon process serves one experiment, so every line
names it, whichever thread logged it); callers bind the tile, round or bit and unit id where
they apply (`log.bind(...)`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]


def configure_logging(
    fmt: LogFormat = "auto", level: str = "info", stream: TextIO | None = None, **fields: object
) -> None:
    """Configure structlog process-wide; `auto` picks the console renderer on a terminal.

    `fields` are added to every event of every thread (contextvars are not shared by threads).
    """
    out = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_fields(fields),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _add_fields(fields: Mapping[str, object]) -> structlog.typing.Processor:
    """A processor putting `fields` into each event (the event's own values win)."""

    def add(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        return {**fields, **event}

    return add


def get_logger(**bound: object) -> structlog.typing.FilteringBoundLogger:
    """A logger with the given fields bound to every event it emits."""
    return structlog.get_logger().bind(**bound)
