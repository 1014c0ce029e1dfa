"""What a unit yields besides its arrays: written by ingestion, read by the monitor."""
