"""Slow-loris and slow bodies are cut off by timeouts, against `leadbox run` on a real socket."""

from __future__ import annotations

import socket
import time
from typing import Any


def _closed_within(sock: socket.socket, budget: float, trickle: bytes) -> float | None:
    """Trickle bytes until the server closes the connection; seconds it took, or None."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    i = 0
    while time.monotonic() - t0 < budget:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - t0
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - t0
        try:
            sock.sendall(trickle[i % len(trickle): i % len(trickle) + 1])
        except OSError:
            return time.monotonic() - t0
        i += 1
    return None


def test_slow_headers_and_idle_connections_are_closed(daemon_process: Any) -> None:
    d = daemon_process({"LEADBOX_HTTP__READ_TIMEOUT": "1"})
    d.start()
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(b"POST /leads HTTP/1.1\r\nHost: x\r\n")
        took = _closed_within(s, 15, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
        assert took is not None, "a client trickling headers kept its connection for 15 s"
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        body = b'{"name": "A", "email": "a@example.com", "message": "hola"}'
        s.sendall(b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5])
        s.settimeout(10)
        answer = s.recv(4096)  # the body never completes: 408 from http.read_timeout
        assert answer.startswith(b"HTTP/1.1 408"), answer[:60]
    assert d.terminate() == 0
