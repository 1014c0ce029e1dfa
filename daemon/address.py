"""The web server's `host:port`: parsed, judged (loopback or not) and bound.

Binding happens here, at start-up and in the caller's thread, so that a refused or busy
address is known before the server thread starts and the port actually bound (`:0` picks a
free one) can be logged.
"""

from __future__ import annotations

import ipaddress
import socket


def parse_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:8765`, `[::1]:8765`, `localhost:8765` -> (host, port).

    Raises:
        ValueError: not host:port with a port in 0..65535.
    """
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen must be HOST:PORT (e.g. 127.0.0.1:8765), got {listen!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or `localhost`); any other name counts as not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(listen: str, token: str) -> None:
    """Reject an unusable address, and one beyond loopback without a token.

    Raises:
        ValueError: the message says what to change.
    """
    if not listen:
        return
    host, _ = parse_listen(listen)
    if not is_loopback(host) and not token:
        raise ValueError(
            f"listen = {listen!r} is not a loopback address: the page would be open to the"
            " network, so set [web] token (requests must then carry it) or listen on"
            " 127.0.0.1"
        )


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on `listen`.

    Raises:
        OSError: the address is in use or cannot be bound; the message names `listen`.
    """
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot listen on {listen}: {reason}") from None
    return sock


def served_url(sock: socket.socket) -> str:
    """The page's address on the bound socket `sock`."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"
