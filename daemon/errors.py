"""The root of every error qi2lab-ingest raises, and the exit status a command ends with on one.

One root lets a caller (the command line, a script that embeds the daemon, a test) tell the
program's own refusals (bad input, a bad config, a datastore another daemon holds) from a bug's
exception with one `except Qi2labError`. Each class also derives from the builtin its callers
caught before there was a root (`ConfigError` is still a ValueError, `LedgerError` an OSError),
so no existing `except` changes meaning. This module imports nothing of the daemon: every level
may derive from it.
"""

from __future__ import annotations


class Qi2labError(Exception):
    """Something qi2lab-ingest refuses or cannot do, said in one line naming what and why."""


# The exit status of a command that ends on an error, by the nearest class in the error's MRO.
# Every error is a refusal today (2); 1 is a run's verdict (units failed), never an error.
EXIT_CODES: dict[type[Qi2labError], int] = {Qi2labError: 2}


def exit_code(exc: Qi2labError) -> int:
    """The exit status a command ends with when `exc` stops it."""
    return next(EXIT_CODES[cls] for cls in type(exc).__mro__ if cls in EXIT_CODES)
