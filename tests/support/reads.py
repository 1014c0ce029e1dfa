"""What a block of code reads of the file system, seen by an audit hook (whatever code reads,
each read counts): for tests that a cost does not grow with the run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_LISTINGS = ("os.scandir", "os.listdir")


@contextmanager
def folders_listed() -> Iterator[list[Path]]:
    """The folders the process lists (os.scandir, os.listdir) while in the block, in order."""
    listed: list[Path] = []
    recording = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if recording[0] and event in _LISTINGS and args and args[0] is not None:
            listed.append(Path(os.fsdecode(args[0])))  # type: ignore[arg-type]

    sys.addaudithook(hook)  # a hook cannot be removed: this one stops recording at the end
    try:
        yield listed
    finally:
        recording[0] = False
