"""Live quality monitoring: per-entry quality numbers, the web page and its metrics."""
