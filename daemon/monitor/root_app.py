"""The page of a data root: `/` lists every experiment, `/exp/<name>/` is one experiment's run
page, `/api/experiments` the list as JSON, `/metrics` every run's series labelled
`experiment`.

The experiments are found again at each request (a new one appears without a restart) and
each is read with its own settings. A URL names an experiment only by matching one of the
names found, never by being joined to a path; an experiment whose own `qi2lab-ingest.toml` is
bad answers its error on its page, and the others are unaffected.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from daemon.config import ConfigError, Settings, experiment_settings
from daemon.datastore.statedir import ledger_path
from daemon.monitor.answers import RunAnswers, not_found
from daemon.monitor.metrics import RunRead, registry_of
from daemon.monitor.overview import experiments, overview
from daemon.monitor.snapshot import Snapshots

ROOT_PAGE = "root.html"


class RootRuns:
    """The root's experiments and a `Snapshots` per experiment, kept while its settings stay
    the same (it remembers the tiles' stage positions)."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self._snapshots: dict[str, Snapshots] = {}

    def snapshots(self, name: str, experiment: Path) -> Snapshots:
        """The experiment's snapshots with its own settings (ConfigError: a bad override)."""
        own = experiment_settings(self.settings, experiment)
        known = self._snapshots.get(name)
        if known is None or known.experiment != experiment or known.settings != own:
            known = self._snapshots[name] = Snapshots(experiment, own)
        return known

    def labelled(self) -> Iterator[RunRead]:
        """Every experiment's files read for /metrics, labelled with its name; one whose
        settings or ledger cannot be read has no series (its row on `/` says why)."""
        for name, experiment in experiments(self.root, self.settings).items():
            try:
                yield RunRead.of(self.snapshots(name, experiment), [name])
            except (ConfigError, OSError, sqlite3.Error):
                continue


def build_root_app(root: Path, settings: Settings) -> Starlette:
    """The ASGI app of every experiment under `root` (read-only)."""
    runs = RootRuns(root.resolve(), settings)
    answers = RunAnswers()
    registry = registry_of(runs.labelled, ["experiment"])

    def index(_request: Request) -> Response:
        return answers.file(ROOT_PAGE)

    def static(request: Request) -> Response:
        return answers.file(request.path_params["name"])

    def listing(_request: Request) -> Response:
        rows = [row.as_json() for row in overview(runs.root, settings)]
        return JSONResponse({"root": str(runs.root), "now": time.time(), "experiments": rows})

    def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def experiment_page(request: Request) -> Response:
        rest = request.path_params["rest"]
        found = experiments(runs.root, settings)
        # the longest name that the path starts with: `a` and `a/b` can both be experiments
        for name in sorted(found, key=len, reverse=True):
            if rest == name:  # the page's relative addresses need the slash
                url = request.url
                return RedirectResponse(url.replace(path=url.path + "/"), status_code=308)
            if rest.startswith(name + "/"):
                below = rest.removeprefix(name + "/")
                try:
                    since = request.query_params.get("since")
                    return answers.answer(runs.snapshots(name, found[name]), below, since)
                except ConfigError as exc:
                    return _failed_run(found[name], below, str(exc), answers)
                except sqlite3.Error as exc:  # a ledger that is not one: this experiment only
                    ledger = ledger_path(runs.snapshots(name, found[name]).store)
                    return _failed_run(found[name], below, f"{ledger}: {exc}", answers)
        return not_found()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/static/{name}", static),
            Route("/api/experiments", listing),
            Route("/metrics", metrics),
            Route("/exp/{rest:path}", experiment_page),
        ]
    )


def _failed_run(experiment: Path, below: str, error: str, answers: RunAnswers) -> Response:
    """The run page of an experiment whose settings or ledger cannot be read: the page, its
    state saying why."""
    if below == "api/state":
        state = {"experiment": str(experiment), "datastore": None, "health": "failed"}
        return JSONResponse(state | {"error": error})
    return answers.page_file(below)
