"""Typed errors for raw data, so the daemon can tell *wait* from *fail* without parsing text.

`RawDataError` and its subclasses mean the bytes on disk are wrong and waiting will not help;
`NotReadyError` means the file is not there yet or is still being written, which is the normal
state of a live acquisition. The two share a message shape, "<file>: <problem>", because the
person reading the log needs to know which file to open.
"""

from __future__ import annotations

from pathlib import Path

from daemon.errors import Qi2labError


class _FileProblem(Qi2labError):
    """An exception about one file; str() is "<file>: <problem>"."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class RawDataError(_FileProblem):
    """Raw data that cannot be used as it is."""


class MetadataError(RawDataError):
    """A metadata CSV (scan metadata, codebook, bit order, stage positions) is wrong."""


class DatasetError(RawDataError):
    """An NDTiff dataset is broken: garbage index, missing planes, truncated stack, ..."""


class NotReadyError(_FileProblem):
    """The file is not there yet or is still being written; try again later."""
