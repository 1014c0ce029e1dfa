"""The read-only web server: the live page, its JSON, and /metrics, of one experiment
(`watch EXP`, `serve EXP`) or of every experiment under a data root (`root_app`).

Starlette + uvicorn in a thread: of `serve`'s process, or of the page process `watch` starts
(`page_process`; see the README for why). Safe by construction rather than by filtering:

- no request path is ever joined to a filesystem path (see `answers`): the page's files are
  read from the package into memory and looked up by exact name, and every other answer is
  computed from the run's files by `Snapshots`; any other path is 404;
- GET (and HEAD, which uvicorn answers as GET without a body) only: any other method is 405
  before routing;
- with a token configured, every request must carry it (`Authorization: Bearer TOKEN`,
  `?token=TOKEN`, or the cookie that a valid `?token=` sets, so that a browser which opened the
  page's address with the token once also loads the page's files, its JSON and the report);
  `config.WebSettings` refuses a non-loopback address without one.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from pathlib import Path

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.address import bind, served_url
from daemon.config import Settings
from daemon.monitor.answers import RunAnswers
from daemon.monitor.metrics import registry_for
from daemon.monitor.root_app import build_root_app
from daemon.monitor.snapshot import Snapshots

# Nothing the page loads comes from elsewhere (the microscope PC is often offline).
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


def build_app(experiment: Path, settings: Settings) -> ASGIApp:
    """The ASGI app for one experiment (read-only): its run page at `/`."""
    snapshots = Snapshots(experiment.resolve(), settings)
    registry = registry_for(snapshots)
    answers = RunAnswers()

    def run_page(request: Request) -> Response:
        since = request.query_params.get("since")
        return answers.answer(snapshots, request.path_params["path"], since)

    def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(routes=[Route("/metrics", metrics), Route("/{path:path}", run_page)])
    return _Guard(app, settings.web.token)


class _Guard:
    """ASGI middleware: GET/HEAD only (405), the token when one is configured (401), and the
    security headers on every answer.

    A valid `?token=` also sets an HttpOnly, SameSite=Strict cookie holding a digest of the
    token (never the token: it may hold characters a cookie cannot), named after the port (a
    browser shares cookies between the ports of a host): the page's own files, fetches and
    links then need no token in their addresses."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()
        self._cookie_value = hmac.new(
            self._token, b"qi2lab-ingest page", hashlib.sha256
        ).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self._app(scope, receive, send)
        extra: list[tuple[bytes, bytes]] = []
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = PlainTextResponse(
                "method not allowed", status_code=405, headers={"allow": "GET, HEAD"}
            )
        elif self._token and not self._authorised(Request(scope), extra):
            response = PlainTextResponse("token required", status_code=401)
        else:
            return await self._app(scope, receive, self._with_headers(send, extra))
        await response(scope, receive, self._with_headers(send, extra))

    def _authorised(self, request: Request, extra: list[tuple[bytes, bytes]]) -> bool:
        """Whether the request carries the token (header, query or cookie); a valid query token
        adds the cookie's Set-Cookie to `extra`."""
        header = request.headers.get("authorization", "")
        bearer = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if hmac.compare_digest(bearer.encode(), self._token):
            return True
        cookie = f"qi2lab-ingest-{request.url.port or 80}"
        if hmac.compare_digest(request.query_params.get("token", "").encode(), self._token):
            value = f"{cookie}={self._cookie_value}; Path=/; HttpOnly; SameSite=Strict"
            extra.append((b"set-cookie", value.encode()))
            return True
        return hmac.compare_digest(
            request.cookies.get(cookie, "").encode(), self._cookie_value.encode()
        )

    @staticmethod
    def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + extra
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        return wrapped


class WebServer:
    """uvicorn serving `app` on an already bound socket, in its own thread."""

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        self.sock = sock
        self.url = served_url(sock)
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve in a daemon thread (so uvicorn leaves the process's signals alone)."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.sock]}, name="web", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()


def open_server(experiment: Path, settings: Settings, listen: str | None = None) -> WebServer:
    """Bind `listen` (default: the config's) and build the server; OSError if it cannot bind."""
    return WebServer(build_app(experiment, settings), bind(listen or settings.web.listen))


def open_root_server(root: Path, settings: Settings, listen: str | None = None) -> WebServer:
    """The server of every experiment under `root` (`build_root_app`), on `listen` (default:
    the config's); OSError if it cannot bind."""
    return WebServer(guarded_root_app(root, settings), bind(listen or settings.web.listen))


def guarded_root_app(root: Path, settings: Settings) -> ASGIApp:
    """The ASGI app of every experiment under `root` (`build_root_app`), behind the guard."""
    return _Guard(build_root_app(root, settings), settings.web.token)
