"""How a person runs this program again: the commands that hints print must work pasted into
a fresh shell, where a virtual environment's bin folder is usually not on PATH (after
`make demo`, `qi2lab-ingest` alone is "command not found")."""

from __future__ import annotations

import os
import shlex
import shutil
import sys


def program() -> str:
    """The command that started this process, to put before a subcommand: the name typed when
    the shell found it on PATH, else the executable's path (relative to the working folder
    when below it, as `.venv/bin/qi2lab-ingest` from the repository), else
    `PYTHON -m daemon.cli`."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    started = sys.argv[0] if sys.argv else ""
    if spec is None or spec.name != "daemon.cli.__main__":  # `python -m daemon.cli`
        if os.sep in started and os.path.isfile(started):
            return pasteable(started)
        if started and os.sep not in started and shutil.which(started):
            return started
    return f"{pasteable(sys.executable)} -m daemon.cli"


def pasteable(path: str) -> str:
    """`path` as a shell word: relative to the working folder when below it, else absolute
    (symlinks kept: a virtual environment's python is one, to an interpreter without the
    package)."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    if relative.startswith(".."):
        return shlex.quote(absolute)
    return shlex.quote(relative if os.sep in relative else f".{os.sep}{relative}")
