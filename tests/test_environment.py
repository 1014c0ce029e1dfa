"""A test that lacks something from the machine is skipped outside CI and fails in CI."""

from __future__ import annotations

import pytest
from support.environment import unavailable


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_in_ci_a_missing_need_fails_the_test(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="no tmpfs: CI must run this test"):
        unavailable("no tmpfs", "run as root")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_outside_ci_a_missing_need_skips_the_test_saying_how_to_get_it(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match=r"no tmpfs \(run as root\)"):
        unavailable("no tmpfs", "run as root")
