"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest
from support.layouts import LAYOUTS, LayoutCase


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> LayoutCase:
    """Each datastore layout in turn (tests that must hold for both take this fixture)."""
    return LAYOUTS[request.param]


@pytest.fixture(autouse=True, scope="session")
def _psf_cache_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Daemons started by the tests keep their PSF cache in the session's temporary folder
    (XDG_CACHE_HOME), not in the home of whoever runs the tests nor a systemd unit's."""
    os.environ.pop("CACHE_DIRECTORY", None)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
