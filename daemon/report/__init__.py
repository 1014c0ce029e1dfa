"""The end-of-run report: one self-contained HTML file of a run's numbers, mosaics, quality and
alerts, written into the datastore when the plan is complete and on demand."""

from daemon.report.write import report_path, write_report

__all__ = ["report_path", "write_report"]
