"""Bind the HTTP address before anything else starts.

A second ``leadbox run`` on a busy port must stop before it touches the store (at start a
SQLite daemon voids the leases it finds, which belong to the process already running), and
it must say so in one line: the address, the port and what to change.
"""

from __future__ import annotations

import errno
import socket

from agent.errors import LeadboxError


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(e: OSError, host: str) -> str:
    if e.errno == errno.EADDRINUSE:
        return ("the address is already in use (is leadbox already running?); "
                "choose another port with http.port or LEADBOX_HTTP__PORT")
    if e.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges); choose http.port 1024 or above"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (http.host)"
    return e.strerror or type(e).__name__


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """One bound (not yet listening) socket per address ``host`` resolves to, as asyncio would bind."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise LeadboxError(
            f"cannot listen on {_where(host, port)}: http.host does not resolve ({e.strerror})") from None
    socks: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, type_, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as e:
                raise LeadboxError(f"cannot listen on {_where(host, port)}: {_reason(e, host)}") from None
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks
