"""The end-of-run report: one self-contained HTML file of a run's numbers, mosaics, quality and
alerts, written into the datastore when the plan is complete and on demand."""

from daemon.report.write import write_report

__all__ = ["write_report"]
