"""Shared fixtures: a fresh datastore in a temporary folder, and one small tensorstore context."""

from pathlib import Path

import pytest
import tensorstore as ts

from daemon.datastore.arrays import make_context
from daemon.datastore.store import DataStore


@pytest.fixture(scope="session")
def context() -> ts.Context:
    """One context for the whole suite, as the daemon shares one per DataStore."""
    return make_context()


@pytest.fixture
def ds(tmp_path: Path, context: ts.Context):
    """A newly created datastore, closed (its staging session removed) after the test."""
    with DataStore(tmp_path / "qi2labdatastore", context=context) as store:
        yield store
