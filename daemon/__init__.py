"""qi2lab-ingest: live ingestion of qi2lab MERFISH raw data into the qi2lab DataStore."""

# The package's version, read by setuptools from here (pyproject.toml: dynamic). A literal, not
# importlib.metadata's answer: importing that cost every start ~0.02 s of CPU (issue 25).
__version__ = "0.1.0"
