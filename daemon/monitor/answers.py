"""What the run page answers, for one run: its files, its JSON and its preview images.

Shared by the app of one experiment (`/` of `watch EXP`, `serve EXP`) and by a root's
`/exp/<name>/`: the page fetches everything relative to its own address, so the same files
serve both. No request path is ever joined to a filesystem path: the page's files are read
from the package into memory and looked up by exact name, a preview by a name listed from the
preview folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from daemon.monitor.snapshot import Snapshots
from daemon.products.preview import PREVIEW_DIR, preview_names, read_level
from daemon.products.runreport import report_path

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
RUN_PAGE = "index.html"


def static_files() -> dict[str, tuple[bytes, str]]:
    """The pages' files by name, read once from the package."""
    folder = resources.files("daemon.monitor") / "static"
    return {
        entry.name: (entry.read_bytes(), STATIC_TYPES[Path(entry.name).suffix])
        for entry in folder.iterdir()
        if Path(entry.name).suffix in STATIC_TYPES
    }


def not_found() -> Response:
    return PlainTextResponse("not found", status_code=404)


class RunAnswers:
    """The answers of a run page, from the package's files held in memory."""

    def __init__(self) -> None:
        self.files = static_files()

    def file(self, name: str) -> Response:
        """A page file by its exact name, else 404."""
        found = self.files.get(name)
        if found is None:
            return not_found()
        return Response(found[0], media_type=found[1])

    def answer(self, snapshots: Snapshots, path: str, since: str | None = None) -> Response:
        """The answer to `path` below a run page's address (`""`, `static/app.js`,
        `api/state`, `api/preview/bit001`), else 404; `since`: the state's `?since=`."""
        if path == "api/state":
            return JSONResponse(snapshots.page(since))
        if path == "report":
            return run_report(snapshots)
        folder, _, name = path.rpartition("/")
        if folder == "api/preview":
            return preview(snapshots, name)
        return self.page_file(path)

    def page_file(self, path: str) -> Response:
        """The run page (`""`) or one of its files (`static/app.js`), else 404."""
        if path == "":
            return self.file(RUN_PAGE)
        folder, _, name = path.rpartition("/")
        return self.file(name) if folder == "static" else not_found()


def run_report(snapshots: Snapshots) -> Response:
    """The end-of-run report (`qi2lab-ingest report`, or written when the plan completed)."""
    path = report_path(snapshots.store)
    if not path.is_file():
        return PlainTextResponse(
            "no run report yet: it is written when the run completes, or by"
            " `qi2lab-ingest report EXPERIMENT`",
            status_code=404,
        )
    return FileResponse(path, media_type="text/html")


def preview(snapshots: Snapshots, name: str) -> Response:
    """A preview image as grey bytes with its width and height in headers."""
    folder = snapshots.store / PREVIEW_DIR
    if name not in preview_names(folder):  # a listed name, never a path from the URL
        return not_found()
    image = read_level(folder, name)
    if image is None:
        return not_found()
    return Response(
        to_uint8(image).tobytes(),
        media_type="application/octet-stream",
        headers={"x-width": str(image.shape[1]), "x-height": str(image.shape[0])},
    )


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Grey levels for the page: the 1st to the 99.9th percentile of the tiles' pixels (the
    empty canvas around them left out) stretched over 0..255."""
    values = image[image > 0]
    if values.size == 0:
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(values, [1.0, 99.9])
    scaled = (image.astype(np.float32) - lo) / max(hi - lo, 1.0) * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)
