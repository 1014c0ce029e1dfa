"""The ingestion daemon: watch, plan, queue, convert, record."""
