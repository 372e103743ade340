"""Client addresses and origins, as the protocol's limits and checks see them."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment


def address_key(remote_addr: str | None) -> str:
    """Return the key that per-address limits count under.

    IPv4 addresses count one by one; IPv6 addresses count per /64, the
    smallest block one subscriber usually holds, so rotating through a
    block's addresses evades nothing. ``remote_addr`` is already the client's
    address: ProxyFix applies ``TRUSTED_PROXIES`` before we get here.
    """
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])
    except ValueError:
        return f"other:{remote_addr}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address_finder(trusted_proxies: int) -> Callable[[dict[str, Any]], str]:
    """Return a function giving the address key of a request's WSGI environ.

    It answers the same for an environ before ProxyFix (the WSGI server's,
    as the WebSocket handler sees it before the app) and after it: with
    ``trusted_proxies``, the address comes from ``X-Forwarded-For`` as
    Werkzeug's ProxyFix reads it, which gives the same answer twice.
    """
    if not trusted_proxies:
        return lambda environ: address_key(environ.get("REMOTE_ADDR"))
    fix = ProxyFix(_answer_remote_addr, x_for=trusted_proxies)
    return lambda environ: address_key(b"".join(fix(dict(environ), _unused)).decode())


def _answer_remote_addr(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """A WSGI app whose answer is the client address it was given."""
    return [environ.get("REMOTE_ADDR", "").encode()]


def _unused(*args: Any) -> Any:
    raise AssertionError("no response is started")


def origin_allowed(origin: str | None, own_origin: str, allowed: Iterable[str]) -> bool:
    """Tell whether a browser's ``Origin`` may open a socket.

    No header means no browser (a bot or a test client): cross-site socket
    hijacking needs a browser, and browsers always send it. A header sent
    twice arrives joined by commas (websocket-client adds one of its own to
    the one it is given): every origin in it must be allowed.
    """
    if origin is None:
        return True
    candidates = {c.rstrip("/").lower() for c in list(allowed) or [own_origin]}
    return all(sent.strip().rstrip("/").lower() in candidates for sent in origin.split(","))
