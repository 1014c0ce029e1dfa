"""What every command checks and says the same way: the folder it was given, its settings,
why it cannot run (one line, `qi2lab-ingest COMMAND: ...`, exit 2, said by `main`), and the
progress of units on the bar."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.errors import Qi2labError
from daemon.states import UnitState

if TYPE_CHECKING:
    from daemon.config import Settings
    from daemon.console import ProgressBar


class CommandError(Qi2labError):
    """A command that cannot run as asked: `main` prints the message after the command's name
    and ends with the exit status of `errors.exit_code`."""


def inside_raw_data(folder: Path) -> Path | None:
    """The `raw_data` folder that `folder` is, or is inside of; None for an experiment folder.

    A command given raw data would create its datastore in there; an experiment kept under a
    folder that happens to be called raw_data (it has a raw_data of its own) is not refused.
    """
    if folder.name == "raw_data":
        return folder
    if (folder / "raw_data").is_dir():
        return None
    return next((parent for parent in folder.parents if parent.name == "raw_data"), None)


def refuse_raw_data(command: str, folder: Path | None) -> None:
    """Raise CommandError if `folder` is raw data, naming the experiment folder to give."""
    raw_data = inside_raw_data(folder) if folder is not None else None
    if raw_data is not None:
        raise CommandError(
            f"{folder} is raw data, not an experiment folder; "
            f"give the experiment folder: qi2lab-ingest {command} {raw_data.parent}"
        )


def check_experiment(args: argparse.Namespace) -> None:
    """Raise CommandError unless `args.experiment` is an experiment folder."""
    refuse_raw_data(args.command, args.experiment)
    if not args.experiment.is_dir():
        raise CommandError(f"{args.experiment}: no such experiment folder")


def check_experiment_or_root(args: argparse.Namespace) -> None:
    """Raise CommandError unless exactly one of EXPERIMENT and --root is given, and is a
    folder (an experiment folder, or a data root)."""
    if (args.experiment is None) == (args.root is None):
        raise CommandError("give either an EXPERIMENT folder or --root DIR")
    if args.root is None:
        check_experiment(args)
    elif not args.root.is_dir():
        raise CommandError(f"{args.root}: no such data root")


def read_settings(args: argparse.Namespace) -> Settings:
    """The --config file's settings (ConfigError, said by `main`, for a bad one)."""
    from daemon.config import load_settings

    return load_settings(args.config)


def chosen_layout(args: argparse.Namespace) -> str | None:
    """The layout asked for: --layout, else the config file's (None: the datastore's own)."""
    from daemon.config import configured_layout

    return args.layout or configured_layout(args.config)


def describe(exc: Exception, args: argparse.Namespace, settings: Settings, writes: bool) -> str:
    """The one-line message of an error; a permission error names the account and the fix."""
    from daemon.access import denied_in, explain_denied

    denied = denied_in(exc)
    if denied is None:
        return str(exc)
    datastore = settings.datastore_path(args.experiment)
    return explain_denied(denied, args.experiment, datastore, writes)


def no_datastore_hint(args: argparse.Namespace) -> str:
    """The command that creates the datastore, with the --config it needs to find it."""
    from daemon.cli.invocation import program

    config = f" --config {shlex.quote(str(args.config))}" if args.config is not None else ""
    return f"`{program()} watch {shlex.quote(str(args.experiment))}{config}` creates it"


def show_units(bar: ProgressBar, counts: dict[str, int]) -> None:
    """The ledger's counts of units on `bar`: done or failed of all units, and the failures."""
    bar.show(
        counts[UnitState.DONE] + counts[UnitState.FAILED],
        sum(counts.values()),
        failed=counts[UnitState.FAILED],
    )
