"""Listening sockets for ``crunet serve`` and ``crunet gadget``: loopback on both IPv4 and IPv6.

Gadgetron connects a ``<connect port=".."/>`` chain to ``localhost`` and tries only
the first address the name resolves to, which is ``::1`` on many hosts files and
``127.0.0.1`` on others (docs/design.md §9). A listener for it must therefore accept on
both loopback addresses: the host ``localhost`` (or ``loopback``) binds
``127.0.0.1`` and ``::1`` on one port. Any other host binds that address alone.
"""

from __future__ import annotations

import errno
import logging
import select
import socket

log = logging.getLogger("crunet.net")

#: Host names that mean "both loopback addresses".
LOOPBACK_NAMES = ("localhost", "loopback")
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


def _bind(address: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(backlog)
        sock.setblocking(False)  # accept_any() waits in select; accepted sockets are blocking
    except OSError:
        sock.close()
        raise
    return sock


def _bind_loopback(port: int, backlog: int, attempts: int = 20) -> list[socket.socket]:
    """127.0.0.1 and ::1 on one port (a free one for port 0); IPv4 alone without IPv6."""
    for _ in range(attempts):
        v4 = _bind("127.0.0.1", port, backlog)
        chosen = v4.getsockname()[1]
        try:
            return [v4, _bind("::1", chosen, backlog)]
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and port == 0:
                v4.close()  # the free IPv4 port is taken on ::1: try another one
                continue
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                log.warning("no IPv6 loopback on this host (%s); listening on 127.0.0.1 only", exc)
                return [v4]
            v4.close()
            raise
    raise OSError(errno.EADDRINUSE, f"no port free on both 127.0.0.1 and ::1 after {attempts} tries")


def bind_listeners(host: str, port: int, backlog: int = 16) -> list[socket.socket]:
    """Listening sockets for ``host:port``: both loopbacks for ``localhost``, else one."""
    if host.lower() in LOOPBACK_NAMES:
        return _bind_loopback(port, backlog)
    return [_bind(host, port, backlog)]


def describe(listeners: list[socket.socket]) -> str:
    """``127.0.0.1:9002 and [::1]:9002`` for messages."""
    parts = []
    for s in listeners:
        addr, port = s.getsockname()[:2]
        parts.append(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
    return " and ".join(parts)


def accept_any(listeners: list[socket.socket], timeout: float):
    """``(sock, address)`` of one pending connection on any listener, or None after ``timeout``."""
    try:
        ready, _, _ = select.select(listeners, [], [], timeout)
    except (OSError, ValueError):  # a listener was closed under us
        return None
    for lst in ready:
        try:
            return lst.accept()
        except (BlockingIOError, InterruptedError):
            continue
    return None
