"""The flags several commands share, declared once: the experiment folder, --config, --layout,
--listen, and a subcommand's help with its exit codes.

Every path argument is resolved here, once, so the modules below and the logs only ever see
absolute paths.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

HELP_WIDTH = 88  # descriptions kept as written (with the exit codes) are wrapped to this
EXPERIMENT_HELP = "the experiment folder (it holds raw_data/ and gets qi2labdatastore/)"
CONFIG_HELP = "config.toml (default: the built-in defaults, as in the repository's config.toml)"


def path(text: str) -> Path:
    """A path argument, made absolute and resolved at the edge."""
    return Path(text).expanduser().resolve()


def described_command(
    sub: argparse._SubParsersAction, name: str, summary: str, description: str, exit_codes: str
) -> argparse.ArgumentParser:
    """A subcommand whose --help gives `description` wrapped and its exit codes as written."""
    return sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=exit_codes,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def experiment_command(
    sub: argparse._SubParsersAction,
    name: str,
    summary: str,
    description: str,
    exit_codes: str,
    required: bool = True,
) -> argparse.ArgumentParser:
    """A subcommand on one experiment folder, with --config and its exit codes in --help;
    `required=False` for a command that may instead be given a root (`--root`)."""
    p = described_command(sub, name, summary, description, exit_codes)
    p.add_argument("experiment", type=path, nargs=None if required else "?", help=EXPERIMENT_HELP)
    p.add_argument("--config", type=path, help=CONFIG_HELP)
    return p


def add_layout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layout",
        choices=("seed", "merfish3d-v0.6"),
        help="datastore layout; an existing datastore must hold it (default: [datastore] "
        "layout of the configuration if set, else an existing datastore's, else seed)",
    )


def add_listen(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"address of the live page, port 0: any free one (default: [web] listen of the "
        f"config{more})",
    )


ROOT_HELP = (
    "a data root: every experiment folder below it that the [service] experiments glob "
    "matches, instead of one EXPERIMENT"
)


def experiment_or_root_command(
    sub: argparse._SubParsersAction, name: str, summary: str, description: str, exit_codes: str
) -> argparse.ArgumentParser:
    """A subcommand on one experiment folder or, with --root DIR, on every experiment under a
    data root (`common.check_experiment_or_root` says which one was given)."""
    p = described_command(sub, name, summary, description, exit_codes)
    p.add_argument("experiment", type=path, nargs="?", help=EXPERIMENT_HELP)
    p.add_argument("--root", type=path, metavar="DIR", help=ROOT_HELP)
    p.add_argument("--config", type=path, help=CONFIG_HELP)
    return p
