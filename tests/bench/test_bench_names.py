"""bench/ goes on the test path (tests/bench/conftest.py). A folder of tests/ without an
`__init__.py` that tests import from (`monitor.browser`, `support.records`) is a namespace
package, and a plain module of the same name anywhere on the path wins over it: a
bench/monitor.py made `from monitor.browser import chromium` fail once tests/bench had been
collected first."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_IMPORT = re.compile(r"^(?:from|import) ([A-Za-z_]\w*)\.", re.MULTILINE)


def test_no_bench_module_is_named_like_a_package_tests_import_from() -> None:
    folders = {path.name for path in (ROOT / "tests").iterdir() if path.is_dir()}
    imported = {
        name
        for test in (ROOT / "tests").rglob("*.py")
        for name in PACKAGE_IMPORT.findall(test.read_text(encoding="utf-8"))
    }
    modules = {path.stem for path in (ROOT / "bench").glob("*.py")}
    assert {"monitor", "support"} <= folders & imported  # what the check is about
    assert not folders & imported & modules


def test_test_packages_import_after_bench_is_on_the_path() -> None:
    from monitor.browser import chromium  # tests/monitor/browser.py, not a bench module

    assert callable(chromium)
