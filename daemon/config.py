"""config.toml -> frozen, validated settings.

Every section of the file maps onto one frozen dataclass; the loader checks each key against
the dataclass's fields and type hints and lets the dataclass's own `__post_init__` judge the
values. Every table is merged over its defaults, nested ones too (`[raw.red]` with one key keeps
the color's other defaults), so any key may be left out. Any problem becomes a `ConfigError`
that names the file and the dotted TOML key (never a Python class), because the person reading
it is standing at the acquisition PC with the file open in an editor.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from daemon.address import check_listen
from daemon.datastore.codec import ArrayCodec, usable_cores
from daemon.errors import Qi2labError
from daemon.layouts import found_layout
from daemon.raw.defaults import RawDefaults


class ConfigError(Qi2labError, ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


def positive(name: str, value: float) -> None:
    """Reject a value that is not strictly positive (and finite), naming the field."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


# Memory one worker holds: about 4/3 of a large dataset (3 channels x 100 z x 2048^2 px of
# 16 bit, 2.5 GB), rounded up.
WORKER_MEMORY_BYTES = 4 << 30
CGROUP_ROOT = Path("/sys/fs/cgroup")


def workers_for_machine(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The worker count `[workers] count = 0` means: one per usable core (more only contend
    for the same cores), fewer if the memory we may use holds fewer workers' datasets."""
    return max(1, min(usable_cores(), usable_memory(cgroup_root) // WORKER_MEMORY_BYTES))


def usable_memory(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The machine's memory, or less if our cgroup (v2) caps it: systemd's MemoryHigh= and
    MemoryMax= (the units in systemd/ set MemoryHigh=12G)."""
    limits = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return limits[0]
    group = next((line[3:].lstrip("/") for line in lines if line.startswith("0::")), "")
    for name in ("memory.high", "memory.max"):
        try:
            value = (cgroup_root / group / name).read_text().strip()
        except OSError:
            continue
        if value.isdigit():
            limits.append(int(value))
    return min(limits)


LayoutName = Literal["seed", "merfish3d-v0.6"]  # daemon.layouts.LAYOUT_NAMES


@dataclass(frozen=True)
class DatastoreSettings:
    """Where the datastore goes (a relative path is taken relative to the experiment folder)
    and which layout it is written in (`daemon.layouts`)."""

    path: str = "qi2labdatastore"
    layout: LayoutName = "seed"


@dataclass(frozen=True)
class WatchSettings:
    """How new raw data is noticed."""

    observer: Literal["inotify", "polling"] = "inotify"
    poll_interval_s: float = 1.0
    rescan_interval_s: float = 30.0

    def __post_init__(self) -> None:
        positive("poll_interval_s", self.poll_interval_s)
        positive("rescan_interval_s", self.rescan_interval_s)


@dataclass(frozen=True)
class WorkerSettings:
    """The conversion pool: its size, its queue (back-pressure), its retries and re-queuing."""

    count: int = 0  # 0: `workers_for_machine()`; see `threads`
    queue_size: int = 4
    retry_attempts: int = 5
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    stuck_after_s: float = 600.0
    requeue_initial_s: float = 30.0
    requeue_max_s: float = 900.0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be 0 (from the cores) or more, got {self.count!r}")
        positive("queue_size", self.queue_size)
        positive("retry_attempts", self.retry_attempts)
        positive("retry_initial_s", self.retry_initial_s)
        positive("retry_max_s", self.retry_max_s)
        positive("stuck_after_s", self.stuck_after_s)
        positive("requeue_initial_s", self.requeue_initial_s)
        positive("requeue_max_s", self.requeue_max_s)
        if self.requeue_max_s < self.requeue_initial_s:
            raise ValueError(
                f"requeue_max_s ({self.requeue_max_s}) must not be below requeue_initial_s"
                f" ({self.requeue_initial_s})"
            )

    @property
    def threads(self) -> int:
        """The pool's size: `count`, or when it is 0 the machine's (`workers_for_machine`)."""
        return self.count or workers_for_machine()

    def requeue_after_s(self, failures: int) -> float:
        """Back-off before an environmentally failed unit is queued again, after `failures`
        attempts: requeue_initial_s, doubling with each attempt, capped at requeue_max_s."""
        return min(self.requeue_max_s, self.requeue_initial_s * 2 ** max(0, failures - 1))


@dataclass(frozen=True)
class CalibrationSettings:
    """Files that replace the built-in calibrations; empty means the built-in one. And the
    folder where computed PSFs are kept between runs (empty: the default, see
    `daemon.ingest.psfcache.cache_folder`)."""

    noise_map: str = ""
    psf: str = ""
    psf_cache: str = ""


@dataclass(frozen=True)
class CorrectionSettings:
    """Which corrections corrected_data gets beyond gain and offset."""

    hotpixel: Literal["auto", "on", "off"] = "auto"

    def hotpixels_for(self, camera_model: str) -> bool:
        """Whether hot pixels are replaced for this camera ("auto": the FLIR only, like the
        reference converter)."""
        return self.hotpixel == "on" or (self.hotpixel == "auto" and camera_model == "flir")


@dataclass(frozen=True)
class StatusSettings:
    """How often the published views of the ledger are refreshed during a run."""

    ingest_log_interval_s: float = 5.0
    heartbeat_s: float = 60.0

    def __post_init__(self) -> None:
        positive("ingest_log_interval_s", self.ingest_log_interval_s)
        positive("heartbeat_s", self.heartbeat_s)


@dataclass(frozen=True)
class LogSettings:
    """Log format: JSON lines for journald, a readable console on a terminal."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class WebSettings:
    """The live page and /metrics served by `watch` (daemon.monitor.web); empty `listen`
    disables them. Beyond loopback the page needs `token` (checked here, so such a config is
    refused at start-up)."""

    listen: str = "127.0.0.1:8765"
    token: str = ""

    def __post_init__(self) -> None:
        check_listen(self.listen, self.token)


@dataclass(frozen=True)
class ServiceSettings:
    """One service for every experiment under a data root (`watch --root`): the root (empty:
    none, the command line gives one) and the glob, relative to the root, that an experiment
    folder matches."""

    root: str = ""
    experiments: str = "*"

    def __post_init__(self) -> None:
        if not self.experiments or Path(self.experiments).is_absolute():
            raise ValueError(
                f"experiments must be a glob relative to the root, got {self.experiments!r}"
            )


@dataclass(frozen=True)
class AlertSettings:
    """When the run is going wrong, who is told and how soon (daemon.alerts): the rules'
    thresholds and the Apprise URLs notifications go to (none: alerts are still logged, counted
    in /metrics, shown on the page and in `status`)."""

    urls: tuple[str, ...] = ()
    stall_factor: float = 5.0  # no new dataset for this many median intervals ...
    stall_min_s: float = 600.0  # ... and at least this long: stalled
    behind_min: float = 30.0  # the backlog grew for more than this many minutes
    disk_hours: float = 6.0  # a file system fills within this many hours at the current rate
    outlier_sd: float = 4.0  # robust SDs (1.4826 MAD) from the run's median: an outlier tile
    max_shift_um: float = 2.0  # a fiducial's shift against the tile's first round
    min_match_quality: float = 0.5  # a fiducial's match quality below this is poor
    repeat_after_h: float = 24.0  # a standing alert is told again at most this often
    group_s: float = 60.0  # alerts starting or clearing within this window go out as one
    evaluate_every_s: float = 10.0  # how often the rules are evaluated

    def __post_init__(self) -> None:
        for name in (
            "stall_factor",
            "stall_min_s",
            "behind_min",
            "disk_hours",
            "outlier_sd",
            "max_shift_um",
            "repeat_after_h",
            "group_s",
            "evaluate_every_s",
        ):
            positive(name, getattr(self, name))
        if not 0 <= self.min_match_quality <= 1:
            raise ValueError(
                f"min_match_quality must be between 0 and 1, got {self.min_match_quality!r}"
            )
        if self.urls:  # apprise loads its plugins on import: only configs that notify pay it
            import apprise

            for index, url in enumerate(self.urls):
                if apprise.Apprise.instantiate(url) is None:
                    raise ValueError(
                        f"urls[{index}] is not a notification URL Apprise understands:"
                        f" {masked_url(url)!r}"
                    )


def masked_url(url: str) -> str:
    """A notification URL with what may be a secret hidden, for messages and logs: the
    password of `user:password@`, and each token longer than 8 characters shortened to its
    first and last (Apprise's own privacy form, `t...q`), which hides webhook keys."""
    scheme, separator, rest = url.partition("://")
    rest = re.sub(r"(?<=:)[^:@/]+(?=@)", "****", rest)
    rest = re.sub(r"[^/:@?&=.]{9,}", lambda token: f"{token[0][0]}...{token[0][-1]}", rest)
    return f"{scheme}{separator}{rest}"


# The default codec, picked by bench/RESULTS.md's codec table (section 6): the fastest blosc
# codec whose compressed size is within 5 % of the smallest in the table, for camera_data and
# corrected_data both. The spec's reference (zstd 5, bit-shuffle) writes about half as fast and
# stores more. Either opens in zarr-python and tensorstore alike.
DEFAULT_CODEC = ArrayCodec(compressor="zstd", clevel=1, shuffle="byte", z_chunk=1)


@dataclass(frozen=True)
class Settings:
    """Everything the daemon reads from config.toml."""

    datastore: DatastoreSettings = field(default_factory=DatastoreSettings)
    arrays: ArrayCodec = field(default_factory=lambda: DEFAULT_CODEC)
    watch: WatchSettings = field(default_factory=WatchSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    calibrations: CalibrationSettings = field(default_factory=CalibrationSettings)
    corrections: CorrectionSettings = field(default_factory=CorrectionSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    logging: LogSettings = field(default_factory=LogSettings)
    raw: RawDefaults = field(default_factory=RawDefaults)
    web: WebSettings = field(default_factory=WebSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def datastore_path(self, experiment: Path) -> Path:
        """The datastore folder for an experiment folder."""
        return experiment / self.datastore.path

    def summary(self) -> str:
        """The settings that shape a run, on one line (the console's start-up line; the whole
        settings are logged at debug level and in every JSON start-up line)."""
        codec = self.arrays
        return (
            f"{self.workers.threads} workers, queue {self.workers.queue_size}; "
            f"{self.watch.observer} observer, rescan every {self.watch.rescan_interval_s:g} s; "
            f"arrays {codec.compressor} {codec.clevel} {codec.shuffle}-shuffle, "
            f"{codec.z_chunk} z per chunk"
        )


def load_settings(path: Path | None = None) -> Settings:
    """Read a config file into `Settings`; without one, the built-in defaults.

    The repository's config.toml spells out exactly these defaults, with a comment on every
    key (a test keeps the two equal), so a lab copies it and edits what differs.

    Raises:
        ConfigError: the file is missing, is not TOML, or has an unknown key, a value of the
            wrong type or an impossible value; the message names the file and the key.
    """
    if path is None:
        return Settings()
    return _build(Settings, _read_table(path), "", path, Settings())


EXPERIMENT_CONFIG = "qi2lab-ingest.toml"  # an experiment's own settings, in its folder
SERVICE_SECTIONS = ("web", "workers", "service")  # the service's alone: refused per experiment


def experiment_settings(settings: Settings, experiment: Path) -> Settings:
    """The settings for one experiment under a root: the service's `settings`, overridden by
    the experiment folder's own `qi2lab-ingest.toml` when it has one (e.g. its layout or its
    camera). The sections that belong to the whole service are refused there.

    Raises:
        ConfigError: the experiment's file is not valid, or sets a key of the service; the
            message names the file and the key.
    """
    path = experiment / EXPERIMENT_CONFIG
    if not path.is_file():
        return settings
    table = _read_table(path)
    for section in SERVICE_SECTIONS:
        if section in table:
            raise ConfigError(
                f"{path}: [{section}] belongs to the service and cannot be set per experiment"
            )
    if "urls" in (table.get("alerts") or {}):  # one outbox for the service tells them all
        raise ConfigError(
            f"{path}: alerts.urls belongs to the service and cannot be set per experiment"
        )
    built: Settings = _build(Settings, table, "", path, settings)
    return built


def configured_layout(path: Path | None) -> str | None:
    """The [datastore] layout the config file at `path` sets, or None when it leaves it out
    (then an existing datastore is written in the layout it holds).

    Raises:
        ConfigError: as `load_settings`.
    """
    if path is None:
        return None
    datastore = _read_table(path).get("datastore")
    return datastore.get("layout") if isinstance(datastore, dict) else None


def settle_layout(settings: Settings, experiment: Path, chosen: str | None) -> Settings:
    """`settings` with the layout `experiment`'s datastore is written in: `chosen` (`--layout`,
    or the config file's), else the one the datastore already holds, else the default.

    A `chosen` layout that disagrees with the datastore's is kept, so that opening the
    datastore refuses it with a message naming both.
    """
    name = chosen or found_layout(settings.datastore_path(experiment)) or settings.datastore.layout
    # each source names a known layout: --layout's choices, the checked config, a marker
    datastore = dataclasses.replace(settings.datastore, layout=typing.cast(LayoutName, name))
    return dataclasses.replace(settings, datastore=datastore)


def _read_table(path: Path) -> dict[str, Any]:
    """The TOML file at `path` as a table; ConfigError naming the file if it cannot be."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _build(cls: type, table: Any, prefix: str, source: Path, base: Any) -> Any:
    """Build dataclass `cls` from a TOML table merged over `base` (its defaults), checking keys
    and types recursively."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where}] must be a table, got {_kind(table)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - known)
    if unknown:
        known_list = ", ".join(sorted(known))
        raise ConfigError(
            f"{source}: unknown key {prefix}{unknown[0]} (known in [{where}]: {known_list})"
        )
    values = {
        name: _convert(hints[name], value, f"{prefix}{name}", source, getattr(base, name))
        for name, value in table.items()
    }
    try:
        return dataclasses.replace(base, **values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {_keyed(str(exc), prefix, known, where)}") from None


def _keyed(message: str, prefix: str, known: set[str], where: str) -> str:
    """A dataclass's complaint with its field spelled as the TOML key (`arrays.clevel ...`)."""
    field_name = re.match(r"\w+", message)
    if field_name and field_name[0] in known:
        return f"{prefix}{message}"
    return f"[{where}] {message}"


def _convert(hint: Any, value: Any, key: str, source: Path, default: Any = None) -> Any:
    """Check one value against its type hint; nested dataclasses are built recursively over
    `default`, the value they replace."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a class, not an instance
        return _build(hint, value, f"{key}.", source, default)
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{source}: {key} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, key, source)
    if origin in (tuple, list):
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis} or {Any}
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {_kind(value)}")
        converted = [_convert(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        _, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table, got {_kind(value)}")
        return {k: _convert(value_type, v, f"{key}.{k}", source) for k, v in value.items()}
    return _scalar(hint, value, key, source)


def _scalar(hint: Any, value: Any, key: str, source: Path) -> Any:
    """Check a scalar; an int is accepted where a float is meant, never a bool for a number."""
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be {_NAMES[hint]}, got a boolean")
    if not isinstance(value, hint):
        raise ConfigError(f"{source}: {key} must be {_NAMES[hint]}, got {_kind(value)}")
    return value


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _kind(value: Any) -> str:
    """A TOML-ish name of a value's type, for error messages."""
    names = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "list",
        dict: "table",
    }
    return f"{names.get(type(value), type(value).__name__)} {value!r}"
