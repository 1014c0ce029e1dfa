"""qi2lab-ingest: live ingestion of qi2lab MERFISH raw data into the qi2lab DataStore."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qi2lab-ingest")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
