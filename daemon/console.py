"""The one progress bar every command shows on a terminal: ingest, demo, simulate, backfill.

A tqdm bar on stderr, drawn only when stderr is a terminal (nothing in a pipe, a log or a
journal). Text written through `stream` goes above the bar (tqdm clears the bar, writes the
text, draws the bar again below it), so the log and the bar never overwrite each other. This
module imports nothing of the daemon: every command may use it.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm


class ProgressBar:
    """`desc: 42%|####  | done/total unit [elapsed<left, rate] postfix` on a terminal."""

    def __init__(self, desc: str, unit: str, total: int | None = None) -> None:
        # disable=None: off unless stderr is a terminal; dynamic_ncols: fits a resized window
        self._bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, disable=None)
        self.stream = _AboveBar(sys.stdout)  # for the log; the bar is on stderr

    def advance(self, n: int = 1, **postfix: Any) -> None:
        """`n` more done; `postfix` (e.g. failed=1) shown after the bar."""
        if postfix:
            self._bar.set_postfix(refresh=False, **postfix)
        self._bar.update(n)

    def show(self, done: int, total: int, **postfix: Any) -> None:
        """Redraw at `done` of `total` (counts read from elsewhere, such as the ledger)."""
        self._bar.total = total
        self._bar.n = done
        self._bar.set_postfix(refresh=False, **postfix)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _AboveBar:
    """A text stream that writes through `tqdm.write`: the bar is cleared, the text written,
    the bar drawn again below it."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        tqdm.write(text, file=self._out, end="")
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return self._out.isatty()
