"""Every error the daemon defines derives from one root, so a caller tells the program's own
refusals from a bug's exception with one `except Qi2labError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import daemon
from daemon.config import ConfigError
from daemon.errors import Qi2labError, exit_code
from daemon.ingest.ledger import LedgerError


def daemon_modules() -> list[ModuleType]:
    """Every module of the daemon package, imported (`__main__` runs the command: not it)."""
    names = [m.name for m in pkgutil.walk_packages(daemon.__path__, "daemon.")]
    return [importlib.import_module(n) for n in names if not n.endswith("__main__")]


def test_every_exception_class_of_the_daemon_derives_from_qi2laberror() -> None:
    modules = daemon_modules()
    defined = [
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and issubclass(cls, BaseException)
    ]
    assert len(modules) > 50 and len(defined) > 10  # the walk found the package
    strays = [f"{c.__module__}.{c.__qualname__}" for c in defined if not issubclass(c, Qi2labError)]
    assert strays == []


def test_errors_keep_the_builtin_base_their_callers_catch_and_end_a_command_with_2() -> None:
    error = LedgerError(28, "No space left on device", "/data/exp/ledger.sqlite")
    assert isinstance(error, OSError) and error.errno == 28
    assert str(error) == "[Errno 28] No space left on device: '/data/exp/ledger.sqlite'"
    assert isinstance(ConfigError("x"), ValueError)
    assert exit_code(ConfigError("x")) == 2 and exit_code(error) == 2
