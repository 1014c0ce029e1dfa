"""structlog set-up: one JSON object per line for journald, a readable console on a terminal.

Logs go to stdout: the commands that log (`watch`, `ingest`, `backfill`) print nothing else
there, so `qi2lab-ingest watch EXP | jq` reads them; `status` and `verify` print their results
on stdout and do not log. Messages for the person at the terminal (errors, the backfill
summary, progress bars) go to stderr.
Every event carries an ISO timestamp, the level and the event name, plus the process-wide
fields given to `configure_logging` (a daemon process serves one experiment, so every JSON
line names it, whichever thread logged it: journald users select on it); callers bind the
tile, round or bit and unit id where they apply (`log.bind(...)`).

A person at a terminal reads the console instead: there the context fields (`experiment`,
`raw_dir`) are shown the first time only, and the fields in `DEBUG_FIELDS` (the whole settings)
only at debug level, so each line says what happened and little else.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import structlog
from structlog.typing import EventDict

LogFormat = Literal["auto", "json", "console"]
CONTEXT_FIELDS = ("experiment", "raw_dir")  # the same on every line of a process
DEBUG_FIELDS = ("settings",)  # long; the console shows them at debug level only


class TextSink(Protocol):
    """Where log lines go: a text file, or a stream that writes above a progress bar."""

    def write(self, text: str) -> int: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


def configure_logging(
    fmt: LogFormat = "auto", level: str = "info", stream: TextSink | None = None, **fields: object
) -> None:
    """Configure structlog process-wide; `auto` picks the console renderer on a terminal.

    `fields` are added to every event of every thread (contextvars are not shared by threads).
    """
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    console: list[structlog.typing.Processor] = [
        _first_time_only(CONTEXT_FIELDS),
        *([] if level == "debug" else [_without(DEBUG_FIELDS)]),
        structlog.dev.ConsoleRenderer(colors=out.isatty()),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_fields(fields),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            *(console if use_console else [structlog.processors.JSONRenderer()]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # structlog asks for a TextIO but uses only write and flush, which every TextSink has
        logger_factory=structlog.WriteLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def _add_fields(fields: Mapping[str, object]) -> structlog.typing.Processor:
    """A processor putting `fields` into each event (the event's own values win)."""

    def add(_logger: Any, _method: str, event: EventDict) -> EventDict:
        return {**fields, **event}

    return add


def _first_time_only(keys: tuple[str, ...]) -> structlog.typing.Processor:
    """A processor dropping each of `keys` from an event when the same value was shown before."""
    shown: dict[str, object] = {}
    lock = threading.Lock()

    def drop_repeats(_logger: Any, _method: str, event: EventDict) -> EventDict:
        with lock:
            for key in keys:
                if key in event:
                    if shown.get(key) == event[key]:
                        del event[key]
                    else:
                        shown[key] = event[key]
        return event

    return drop_repeats


def _without(keys: tuple[str, ...]) -> structlog.typing.Processor:
    """A processor dropping `keys` from every event."""

    def drop(_logger: Any, _method: str, event: EventDict) -> EventDict:
        for key in keys:
            event.pop(key, None)
        return event

    return drop


def get_logger(**bound: object) -> structlog.typing.FilteringBoundLogger:
    """A logger with the given fields bound to every event it emits."""
    return structlog.get_logger().bind(**bound)
