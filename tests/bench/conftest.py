"""bench/'s modules import one another by their plain names (bench/run.py runs as a script):
its folder goes on the path, last, so none of them could shadow a standard module."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))
