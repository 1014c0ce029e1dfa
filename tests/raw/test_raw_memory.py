"""Reading a full-size dataset needs about its own size in memory, not several copies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

SHAPE = (3, 60, 2048, 2048)  # channels, z, y, x: 1.5 GB of uint16

WRITE = """
import sys
import numpy as np
from ndstorage import NDTiffDataset
c_n, z_n, y_n, x_n = {shape}
dataset = NDTiffDataset(sys.argv[1], name="big", writable=True)
dataset.initialize({{}})
ramp = np.arange(y_n * x_n, dtype=np.uint16).reshape(y_n, x_n)
for z in range(z_n):  # z-major, as the ORCA writes
    for c in range(c_n):
        dataset.put_image({{"channel": f"ch{{c}}", "z": z}}, ramp + np.uint16(1000 * c + z), {{}})
dataset.finish()
dataset.close()
"""

READ = """
import json, resource, sys
import numpy as np
from daemon.raw.ndtiff import RawDataset
with RawDataset(sys.argv[1]) as dataset:
    stack = dataset.read()
    first, last = stack[:, :, 0, 0].astype(int), stack[:, :, -1, -1].astype(int)
    expected = 1000 * np.arange(stack.shape[0])[:, None] + np.arange(stack.shape[1])
    ok = bool((first == expected).all() and (last == (expected - 1) % 65536).all())
    print(json.dumps({"shape": list(stack.shape), "nbytes": stack.nbytes, "ok": ok,
                      "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


@pytest.mark.slow
def test_full_size_read_peaks_near_the_data_size(tmp_path):
    try:
        subprocess.run([sys.executable, "-c", WRITE.format(shape=SHAPE), str(tmp_path)], check=True)
        folder = next(tmp_path.iterdir())
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(READ), str(folder)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)  # 1.5 GB: don't leave it to pytest's retention
    result = json.loads(out)
    assert result["shape"] == list(SHAPE) and result["ok"]
    assert result["peak"] <= 2 * result["nbytes"], result
