"""What a test needs from the machine (a browser, a tmpfs mount, a user namespace, a tool)
and cannot have here.

Outside CI the test is skipped with the reason and the remedy. In CI (the `CI` variable set,
as `.ci/run` sets it) it fails instead: CI runs as root with every such tool installed, and a
CI run that passes without having exercised the fault or the page has lost that coverage
silently.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (CI=1/true/yes), where nothing may be skipped for lack of a tool."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str, remedy: str) -> NoReturn:
    """Skip the calling test because the machine lacks what it needs, or fail it in CI.

    `reason` says what is missing or refused, `remedy` what provides it (a package, root).
    """
    if in_ci():
        pytest.fail(f"{reason}: CI must run this test ({remedy}; .ci/run provides it)")
    pytest.skip(f"{reason} ({remedy})")
