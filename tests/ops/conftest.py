"""Fixtures of the operations tests: a notify socket, and a finished, ingested experiment."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import NotifySocket, ingest_simulated


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished experiment ingested by `ingest` in the seed layout; copy it before changing
    anything."""
    return ingest_simulated(tmp_path_factory.mktemp("ingested"), "seed")


@pytest.fixture
def experiment_copy(ingested: Path, tmp_path: Path) -> Path:
    """A private copy of the ingested experiment."""
    return Path(shutil.copytree(ingested, tmp_path / "exp", symlinks=True))
