"""Where the live page is served: the address a command names is the one actually bound."""

from __future__ import annotations

from pathlib import Path

from ops_support import busy_port, cli


def test_serve_on_a_busy_port_names_the_address(experiment_copy: Path) -> None:
    with busy_port(0) as port:
        result = cli("serve", experiment_copy, "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr
