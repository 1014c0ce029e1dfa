"""What a cold start imports and sets. `ingest` leaves out what only `watch` uses (the page's web
server, the alerts), so a one-pass run does not pay for their imports before its first unit. A
watching daemon imports what a unit imports on first use while it waits for the microscope's
first dataset, so the first unit does not pay for it either. The daemon hands the GIL round
every SWITCH_INTERVAL_S, so the page's thread gets it back soon after each of its I/O calls.
A converting command asks for one BLAS thread before numpy loads OpenBLAS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.daemon import DaemonProcess
from support.experiment import daemon_command, simulate, write_config

from daemon.cli.watch import SWITCH_INTERVAL_S
from daemon.events import Event
from daemon.ingest.warmup import UNIT_IMPORTS
from daemon.simulate.settings import SimulationSettings

ONLY_FOR_WATCH = ("daemon.monitor.web", "daemon.alerts.evaluator", "uvicorn", "apprise")
UNIT_LIBRARIES = ("scipy", "skimage", "yaozarrs", "pydantic")  # what a unit imports when first used
TINY = SimulationSettings(tiles=1, rounds=2, z=2, size=32, channels=2)


def _ingest_then_print(
    experiment, config, before: str, after: str, command: tuple[str, ...] = ("ingest",)
) -> str:
    """Run `ingest` (or `command`) in a fresh interpreter with `before` run first, `after`
    printed last."""
    arguments = [*command, str(experiment), "--config", str(config)]
    code = (
        f"import sys; {before}; from daemon.cli.main import main;"
        f"status = main({arguments!r});"
        f"print({after}); sys.exit(status)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.splitlines()[-1]


def test_ingest_does_not_import_the_web_server_or_the_alerts(tmp_path):
    simulate(tmp_path / "exp", TINY)
    config = write_config(tmp_path / "config.toml")
    imported = f"sorted(m for m in {ONLY_FOR_WATCH!r} if m in sys.modules)"
    assert _ingest_then_print(tmp_path / "exp", config, "pass", imported) == "[]"


def test_a_daemon_serving_the_page_hands_the_gil_round_sooner_than_python_does(tmp_path):
    """Measured in bench/api_scale.py --busy: the page's answer during a run waits for the GIL
    behind the workers up to the switch interval at each of its I/O calls."""
    simulate(tmp_path / "exp", TINY)
    config = write_config(tmp_path / "config.toml")
    watch = ("watch", "--exit-when-complete", "--listen", "127.0.0.1:0")
    interval = _ingest_then_print(
        tmp_path / "exp", config, "pass", "sys.getswitchinterval()", watch
    )
    assert float(interval) == SWITCH_INTERVAL_S < sys.getswitchinterval()


def test_after_the_warm_up_a_unit_imports_no_library_of_its_own(tmp_path):
    """The warm-up's list is complete: converting units (a fiducial's registration QC needs a
    second round) imports none of the libraries a unit imports when first used."""
    simulate(tmp_path / "exp", TINY)
    config = write_config(tmp_path / "config.toml")
    before = (
        "import daemon.ingest.service; from daemon.ingest.warmup import warm_up; warm_up(False);"
        "had = set(sys.modules)"
    )
    new = f"sorted(m for m in set(sys.modules) - had if m.split('.')[0] in {UNIT_LIBRARIES!r})"
    assert _ingest_then_print(tmp_path / "exp", config, before, new) == "[]"


# what `ingest` does before its first unit: its command's imports, then its service opened (the
# datastore created, its codebook tables set) and closed
OPENS_THE_SERVICE = """
import sys
from daemon.cli.main import main
from pathlib import Path

from daemon.cli import watch
from daemon.config import load_settings, settle_layout
from daemon.ingest.service import IngestService

experiment, config, layout = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
settings = settle_layout(load_settings(config), experiment, layout)
with IngestService(experiment, settings):
    pass
print(sorted(m for m in ("pyarrow",) if m in sys.modules))
"""


@pytest.mark.parametrize("layout", ["seed", "merfish3d-v0.6"])
def test_ingest_opens_its_service_without_pyarrow(layout, tmp_path):
    """pyarrow is for the Parquet views, written once units are under way (and for reading
    tables back, which a run never does): importing it cost ~0.02 s of CPU of every start
    before the first unit (issue 25)."""
    simulate(tmp_path / "exp", TINY)
    config = write_config(tmp_path / "config.toml")
    run = subprocess.run(
        [sys.executable, "-c", OPENS_THE_SERVICE, str(tmp_path / "exp"), str(config), layout],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[-1] == "[]"


def sees_importer(module: str) -> str:
    """Code run first in the interpreter: remembers which thread first imported `module`."""
    return (
        "import threading;"
        "importer = [];"
        "Finder = type('Finder', (), {'find_spec': lambda self, name, path=None, target=None:"
        f" importer.append(threading.current_thread().name) if name == {module!r} else None}});"
        "sys.meta_path.insert(0, Finder())"
    )


def test_ingest_imports_the_registration_libraries_beside_the_first_units(tmp_path):
    """`ingest` has no idle time to warm up in: scikit-image and scipy.ndimage are imported in
    a thread of their own from the first unit on, not by the worker whose round-1 unit first
    registers its fiducial (which held up that worker, and the GIL, for ~0.3 s)."""
    simulate(tmp_path / "exp", TINY)
    config = write_config(tmp_path / "config.toml")
    importer = _ingest_then_print(tmp_path / "exp", config, sees_importer("skimage"), "importer")
    assert importer == "['unit-imports']"


def test_ingest_reads_package_versions_only_in_the_psf_thread(tmp_path):
    """importlib.metadata (~0.02-0.03 s of CPU to import) is for the PSF cache's key, psfmodels'
    version, taken in the PSF thread beside the first units: the daemon's own version is a
    literal, and the progress bar's tqdm, which imports it too, is imported only on a
    terminal (issue 25)."""
    simulate(tmp_path / "exp", TINY)
    config = write_config(tmp_path / "config.toml")
    before = sees_importer("importlib.metadata")
    assert _ingest_then_print(tmp_path / "exp", config, before, "importer") == "['psf']"


def test_a_watching_daemon_warms_up_before_the_first_dataset(tmp_path):
    experiment = tmp_path / "exp"
    (experiment / "raw_data").mkdir(parents=True)  # empty: the microscope has not begun
    config = write_config(tmp_path / "config.toml", web={"listen": ""})
    with DaemonProcess("watch", experiment, config) as daemon:
        warmed = daemon.wait_event(Event.WARMED_UP)
        assert warmed["modules"] == [module for module, _name in UNIT_IMPORTS]
        # start-up's objects (modules, classes, functions) frozen out of full collections
        assert warmed["frozen"] > 10_000
        assert not daemon.named(Event.DATASET_SEEN)


def test_a_root_daemon_freezes_no_experiments_service(tmp_path):
    """Under `watch --root` an experiment's service is opened and closed as its run comes and
    goes: frozen while open, it would never be freed once closed, so its warm-up freezes
    nothing (a daemon of one experiment freezes start-up's objects, above)."""
    root = tmp_path / "root"
    (root / "exp" / "raw_data").mkdir(parents=True)
    config = write_config(tmp_path / "config.toml", web={"listen": ""})
    with DaemonProcess("watch", None, config, "--root", str(root)) as daemon:
        warmed = daemon.wait_event(Event.WARMED_UP)
        assert warmed["frozen"] == 0


def test_the_ingest_command_ends_without_the_interpreters_teardown(tmp_path):
    """Once `ingest` has closed all it opened, the process ends at once: tearing down scipy,
    pydantic and tensorstore module by module cost 0.2-0.3 s of every run. Its log is whole.
    (An atexit hook, put in by sitecustomize, says whether the teardown ran.)"""
    simulate(tmp_path / "exp", TINY)
    config = write_config(tmp_path / "config.toml")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import atexit, sys\natexit.register(lambda: print('torn down', file=sys.stderr))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), *sys.path])}
    run = subprocess.run(
        daemon_command("ingest", tmp_path / "exp", config),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.splitlines()[-1])["event"] == Event.STOPPED
    assert "torn down" not in run.stderr


# sitecustomize of a daemon process: says on stderr what the BLAS thread variables were when
# numpy was first imported (a finder asked first, which finds nothing itself)
SAYS_THREADS_AT_NUMPY = """\
import os, sys


class SaysThreads:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            said = [os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")]
            print("threads at numpy:", *said, file=sys.stderr)
        return None


sys.meta_path.insert(0, SaysThreads())
"""


def _threads_at_numpy(tmp_path, **env: str) -> str:
    """The BLAS thread variables a real `ingest` process had when it imported numpy."""
    simulate(tmp_path / "exp", TINY)
    config = write_config(tmp_path / "config.toml")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SAYS_THREADS_AT_NUMPY)
    clean = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    }
    run = subprocess.run(
        daemon_command("ingest", tmp_path / "exp", config),
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, **env, "PYTHONPATH": os.pathsep.join([str(hooks), *sys.path])},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return next(line for line in run.stderr.splitlines() if line.startswith("threads at numpy:"))


def test_ingest_asks_for_one_blas_thread_before_numpy_loads_openblas(tmp_path):
    """OpenBLAS starts its threads when numpy is imported; the workers use one each."""
    assert _threads_at_numpy(tmp_path) == "threads at numpy: 1 1"


def test_ingest_keeps_the_blas_threads_the_user_asked_for(tmp_path):
    said = _threads_at_numpy(tmp_path, OPENBLAS_NUM_THREADS="2")
    assert said == "threads at numpy: 2 1"
