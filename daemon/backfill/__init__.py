"""Backfill finished experiments on a Dask cluster: `qi2lab-ingest backfill` ([cluster])."""
