"""Where a datastore's end-of-run report is: written by `daemon.report`, served by the page."""

from __future__ import annotations

from pathlib import Path

REPORT_DIR = "reports"  # in the datastore
REPORT_NAME = "run-report.html"


def report_path(store: Path) -> Path:
    """Where a datastore's run report is."""
    return store / REPORT_DIR / REPORT_NAME
