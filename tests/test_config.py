"""config.toml -> Settings: the shipped file equals the defaults; bad files name the key."""

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.config import (
    WORKER_MEMORY_BYTES,
    ConfigError,
    Settings,
    load_settings,
    usable_memory,
    workers_for_machine,
)
from daemon.datastore.codec import ArrayCodec

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_is_exactly_the_built_in_defaults():
    assert load_settings(REPO_CONFIG) == Settings()


def test_values_are_read_into_frozen_settings(tmp_path):
    settings = load_settings(
        write(
            tmp_path,
            '[workers]\ncount = 4\n[arrays]\ncompressor = "lz4"\n'
            '[raw.red]\ndye = "cy5"\nexcitation_um = 0.64\nemission_um = 0.68\n',
        )
    )
    assert settings.workers.count == 4
    assert settings.arrays.compressor == "lz4"
    assert settings.raw.red.dye == "cy5"
    assert settings.raw.blue == Settings().raw.blue  # untouched sections keep their defaults
    with pytest.raises(AttributeError):
        settings.workers.count = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[workers]\ncount = -1\n", r": workers.count must be 0 \(from the cores\) or more"),
        ("[workers]\ncount = 'two'\n", r"workers.count must be an integer, got string 'two'"),
        ("[workers]\ncount = true\n", r"workers.count must be an integer, got a boolean"),
        ("[workers]\nthreads = 2\n", r"unknown key workers.threads"),
        ("[wokers]\ncount = 2\n", r"unknown key wokers"),
        (
            "[watch]\nobserver = 'fanotify'\n",
            r"watch.observer must be one of \['inotify', 'polling'\]",
        ),
        ("[arrays]\nclevel = 12\n", r": arrays.clevel must be an int in 0..9, got 12"),
        (
            "[raw.blue]\ndye='x'\nexcitation_um = 488\nemission_um = 0.52\n",
            r": raw.blue.excitation_um: 488 looks like nm",
        ),
        ("[raw]\ntile_overlap = 1.5\n", r": raw.tile_overlap must be a fraction"),
        (
            "[raw]\nyx_pixel_um = 98\n",
            r": raw.yx_pixel_um: 98 µm is outside 0.02-5 µm for a pixel size$",
        ),
        ("[raw]\nz_step_um = 315\n", r": raw.z_step_um: 315 µm is outside 0.05-20 µm"),
        ("[raw]\nz_step_um = 0.0\n", r": raw.z_step_um: 0 µm is outside 0.05-20 µm"),
        (
            "[workers]\nrequeue_initial_s = 60\nrequeue_max_s = 30\n",
            r": workers.requeue_max_s \(30.0\) must not be below requeue_initial_s",
        ),
        (
            "[alerts]\nurls = ['json://127.0.0.1:8080/hook', 'slak://x']\n",
            r": alerts.urls\[1\] is not a notification URL Apprise understands: 'slak://x'$",
        ),
        ("[alerts]\nurls = ['']\n", r": alerts.urls\[0\] is not a notification URL Apprise"),
        ("workers = 3\n", r"\[workers\] must be a table"),
        ("[workers\n", r"not valid TOML"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(path)
    assert str(raw := raised.value).startswith(str(path)), raw
    assert not re.search(r"[A-Z][a-z]+[A-Z]\w*|__init__", str(raw)), f"a Python name in {raw}"


def test_a_broken_notification_url_is_refused_without_its_secrets(tmp_path):
    """A URL Apprise cannot use is named by its key, its secrets masked: the message goes to
    the journal, which more people read than config.toml."""
    path = write(
        tmp_path,
        "[alerts]\nurls = ['slackk://hooks/t1jj3t3l2/a1brtd4jd/tiiajkdnlazkcoxridevi7fq',"
        " 'mailtoz://lab:hunter2secret@lab.org']\n",
    )
    with pytest.raises(ConfigError, match=r"alerts.urls\[0\] is not a notification URL") as bad:
        load_settings(path)
    assert "tiiajkdnlazkcoxridevi7fq" not in str(bad.value)
    assert "'slackk://hooks/t...2/a...d/t...q'" in str(bad.value)
    path.write_text("[alerts]\nurls = ['mailtoz://lab:hunter2secret@lab.org']\n")
    with pytest.raises(ConfigError, match=r"alerts.urls\[0\]") as bad:
        load_settings(path)
    assert str(bad.value).endswith("'mailtoz://lab:****@lab.org'"), bad.value


def test_notification_urls_apprise_understands_are_kept(tmp_path):
    urls = ["json://127.0.0.1:8080/hook", "ntfy://ntfy.sh/our-lab-scope"]
    settings = load_settings(write(tmp_path, f"[alerts]\nurls = {urls!r}\n"))
    assert settings.alerts.urls == tuple(urls)


def test_one_key_of_a_nested_table_keeps_the_others_defaults(tmp_path):
    """`[raw.red]` or `[raw.orcav3]` with one key changes that key only (every key may be left
    out, nested tables too)."""
    defaults = Settings().raw
    settings = load_settings(
        write(tmp_path, "[raw.red]\nemission_um = 0.68\n[raw.orcav3]\ne_per_adu = 0.5\n")
    )
    assert settings.raw.red == replace(defaults.red, emission_um=0.68)
    assert settings.raw.orcav3 == replace(defaults.orcav3, e_per_adu=0.5)
    assert settings.raw.orcav3.image_rotated  # the ORCA's orientation is not reset
    assert settings.raw.blue == defaults.blue


def test_the_cli_reads_a_config_with_one_key_of_a_color(tmp_path):
    """What a user first tries, `[raw.red]` with only `emission_um`, is accepted by the CLI,
    which then gets as far as saying there is no datastore yet."""
    (tmp_path / "exp").mkdir()
    config = write(tmp_path, "[raw.red]\nemission_um = 0.68\n")
    run = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "status", str(tmp_path / "exp"), "--config", config],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "no datastore yet" in run.stderr, run.stderr
    assert "raw.red" not in run.stderr
    nm = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "status",
            str(tmp_path / "exp"),
            "--config",
            write(tmp_path, "[raw.red]\nemission_um = 670\n"),
        ],
        capture_output=True,
        text=True,
    )
    assert nm.returncode == 2
    assert nm.stderr.endswith(
        "config.toml: raw.red.emission_um: 670 looks like nm; give µm (e.g. 0.488 for 488 nm)\n"
    ), nm.stderr


def test_the_cli_refuses_a_z_step_in_nm_naming_the_key(tmp_path):
    """`z_step_um = 315` (nm typed as µm) stops the CLI with the config error's exit 2."""
    (tmp_path / "exp").mkdir()
    config = write(tmp_path, "[raw]\nz_step_um = 315\n")
    run = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "status", str(tmp_path / "exp"), "--config", config],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.endswith(
        "config.toml: raw.z_step_um: 315 µm is outside 0.05-20 µm for a z step\n"
    ), run.stderr


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "nope.toml")


def test_the_default_codec_is_blosc_zstd_1_byte_shuffle():
    """bench/RESULTS.md's codec table picked it (issue 13); config.toml says so too."""
    expected = ArrayCodec(compressor="zstd", clevel=1, shuffle="byte", z_chunk=1)
    assert Settings().arrays == expected
    assert load_settings(REPO_CONFIG).arrays == expected


def test_an_experiment_file_overrides_its_settings_but_not_the_services(tmp_path: Path) -> None:
    from daemon.config import EXPERIMENT_CONFIG, experiment_settings

    service = Settings()
    assert experiment_settings(service, tmp_path) is service  # no file: the service's own
    (tmp_path / EXPERIMENT_CONFIG).write_text('[datastore]\nlayout = "merfish3d-v0.6"\n')
    own = experiment_settings(service, tmp_path)
    assert own.datastore.layout == "merfish3d-v0.6" and own.workers == service.workers
    (tmp_path / EXPERIMENT_CONFIG).write_text("[workers]\ncount = 8\n")
    with pytest.raises(ConfigError, match=r"qi2lab-ingest.toml: \[workers\] belongs to the"):
        experiment_settings(service, tmp_path)
    (tmp_path / EXPERIMENT_CONFIG).write_text("[raw]\nz_step_um = 315.0\n")
    with pytest.raises(ConfigError, match=r"qi2lab-ingest.toml: raw.z_step_um"):
        experiment_settings(service, tmp_path)
    # An experiment's thresholds are its own; where notifications go is the service's.
    (tmp_path / EXPERIMENT_CONFIG).write_text("[alerts]\nstall_min_s = 60\n")
    assert experiment_settings(service, tmp_path).alerts.stall_min_s == 60.0
    (tmp_path / EXPERIMENT_CONFIG).write_text('[alerts]\nurls = ["json://localhost/x"]\n')
    with pytest.raises(ConfigError, match=r"qi2lab-ingest.toml: alerts.urls belongs to the"):
        experiment_settings(service, tmp_path)


_POOL_SIZE = """
import os, sys
from pathlib import Path
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: int(sys.argv[2])]))
from daemon.config import load_settings
print(load_settings(Path(sys.argv[1])).workers.threads)
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_count_0_is_one_worker_per_core_the_daemon_may_use(tmp_path: Path):
    """More workers than cores only contend for them (bench/RESULTS.md section 7): the
    default pool follows the cores the process may run on, a set count is kept."""
    cores = len(os.sched_getaffinity(0))
    config = tmp_path / "config.toml"

    def pool(text: str, allowed: int) -> int:
        config.write_text(text)
        run = [sys.executable, "-c", _POOL_SIZE, str(config), str(allowed)]
        return int(subprocess.run(run, capture_output=True, text=True, check=True).stdout)

    assert pool("[workers]\ncount = 0\n", 1) == 1
    assert pool("", cores) == cores  # the default is 0 (machines here have >= 1 GiB a core)
    assert pool("[workers]\ncount = 3\n", 1) == 3


def test_count_0_fits_the_memory_the_cgroup_allows(tmp_path: Path):
    """Under systemd (MemoryHigh=12G in systemd/) the pool is sized by the cgroup's limit,
    not the machine's memory: read from our own cgroup's folder under the (given) root."""
    line = next(x for x in Path("/proc/self/cgroup").read_text().splitlines() if x[:3] == "0::")
    group = tmp_path / line[3:].lstrip("/")
    group.mkdir(parents=True, exist_ok=True)
    (group / "memory.max").write_text("max\n")
    assert usable_memory(tmp_path) == usable_memory(tmp_path / "elsewhere") > WORKER_MEMORY_BYTES

    (group / "memory.high").write_text(f"{WORKER_MEMORY_BYTES + 1}\n")
    assert usable_memory(tmp_path) == WORKER_MEMORY_BYTES + 1
    assert workers_for_machine(tmp_path) == 1
