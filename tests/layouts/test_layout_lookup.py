"""A datastore folder's layout is found by its marker file, without importing any backend
(the merfish3d-v0.6 one pulls in pydantic through yaozarrs; a seed run need not pay for it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon.datastore.codec import usable_cores
from daemon.layouts import LAYOUT_NAMES, check_layout, open_layout

BACKENDS = ("daemon.layouts.seed", "daemon.layouts.merfish3d_v06", "yaozarrs")

_LOOKUP = """
import json, sys
from pathlib import Path
from daemon.layouts import found_layout
found = [found_layout(Path(p)) for p in sys.argv[1:]]
print(json.dumps({"found": found, "modules": sorted(sys.modules)}))
"""


def test_each_layout_is_found_by_its_marker_without_importing_a_backend(tmp_path: Path):
    folders = [tmp_path / name for name in LAYOUT_NAMES]
    for folder, name in zip(folders, LAYOUT_NAMES, strict=True):
        with open_layout(folder, name):  # a real datastore of that layout, marker and all
            pass
        check_layout(folder, name)  # its own layout is accepted again
    new = tmp_path / "new"
    out = subprocess.run(
        [sys.executable, "-c", _LOOKUP, *map(str, [*folders, new])],
        capture_output=True,
        text=True,
        check=True,
    )
    looked_up = json.loads(out.stdout)
    assert looked_up["found"] == [*LAYOUT_NAMES, None]
    assert [m for m in BACKENDS if m in looked_up["modules"]] == []


def test_every_layout_writes_through_one_context_bounded_to_the_cores(tmp_path: Path):
    """Tensorstore's thread limits hold only across arrays of one context: a context per
    array or per datastore let N workers run N times the limit on the same cores."""
    stores = [open_layout(tmp_path / name, name) for name in LAYOUT_NAMES]
    try:
        contexts = {id(store.context) for store in stores}
        assert len(contexts) == 1 and stores[0].context is not None
        spec = stores[0].context.spec.to_json()
        for resource in ("data_copy_concurrency", "file_io_concurrency"):
            assert spec[resource] == {"limit": usable_cores()}
    finally:
        for store in stores:
            store.close()
