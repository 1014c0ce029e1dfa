"""config.toml -> Settings: the shipped file equals the defaults; bad files name the key."""

from pathlib import Path

import pytest

from daemon.config import ConfigError, Settings, load_settings

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
        ("[workers]\ncount = -1\n", r"\[workers\] count must be a positive number"),
        ("[workers]\ncount = 0\n", r"count must be a positive number"),
        ("[workers]\ncount = 'two'\n", r"workers.count must be an integer, got string 'two'"),
        ("[workers]\ncount = true\n", r"workers.count must be an integer, got a boolean"),
        ("[workers]\nthreads = 2\n", r"unknown key workers.threads"),
        ("[wokers]\ncount = 2\n", r"unknown key wokers"),
        (
            "[watch]\nobserver = 'fanotify'\n",
            r"watch.observer must be one of \['inotify', 'polling'\]",
        ),
        ("[arrays]\nclevel = 12\n", r"\[arrays\] .*clevel"),
        (
            "[raw.blue]\ndye='x'\nexcitation_um = 488\nemission_um = 0.52\n",
            r"\[raw.blue\] excitation_um: 488 looks like nm",
        ),
        ("[raw]\ntile_overlap = 1.5\n", r"\[raw\] tile_overlap"),
        ("workers = 3\n", r"\[workers\] must be a table"),
        ("[workers\n", r"not valid TOML"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(path)
    assert str(raw := raised.value).startswith(str(path)), raw


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "nope.toml")
