"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest
from support.layouts import LAYOUTS, LayoutCase


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> LayoutCase:
    """Each datastore layout in turn (tests that must hold for both take this fixture)."""
    return LAYOUTS[request.param]
