"""Slow-loris, slow bodies and oversized bodies (Content-Length, chunked, gzip bombs) are cut off,
against `leadbox run` on a real socket."""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.drivers import query


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


@pytest.mark.slow
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


# ------------------------------------------------- oversized bodies over a real socket

LIMIT = 65536  # http.max_body_bytes (the default)


def _lead_prefix(email: str) -> bytes:
    return b'{"name": "Big", "email": "' + email.encode() + b'", "message": "'


def _read_answer(sock: socket.socket, timeout: float) -> bytes:
    """Whatever the server sends until it closes or goes quiet (b"" when it only closed)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _stored_leads(tmp: Path) -> int:
    return int(query(tmp / "leadbox.db", "SELECT count(*) FROM leads")[0][0])


def _chunked(sock: socket.socket, pieces: Iterator[bytes]) -> bool:
    """Send pieces as HTTP chunks, then the last chunk; False when the server cut us off first."""
    try:
        for piece in pieces:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _gzip_bomb(inflated: int, block: int = 1 << 20) -> Iterator[bytes]:
    """gzip of `inflated` zero bytes, produced as it is sent (about 1 KiB per inflated MiB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(block)
    for _ in range(inflated // block):
        out = z.compress(zeros)
        if out:
            yield out
    yield z.flush()


def _post_head(extra: bytes) -> bytes:
    return b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra + b"\r\n"


def _assert_still_serving(port: int) -> None:
    body = b'{"name": "Ok", "email": "after@example.com", "message": "hola"}'
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(_post_head(b"Content-Length: %d\r\nConnection: close\r\n" % len(body)) + body)
        assert _status(_read_answer(s, 10)) == 202


@pytest.mark.slow
def test_oversized_bodies_are_refused_without_reading_them(daemon_process: Any, tmp_path: Path) -> None:
    d = daemon_process()
    d.start()
    assert d.proc is not None
    rss_before = _rss_kib(d.proc.pid)
    seen: dict[str, int | None] = {}  # answer status per case, printed (None: connection closed)

    # 1. A Content-Length over the limit is answered 413 from the headers alone: no body sent.
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(_post_head(b"Content-Length: %d\r\n" % (50 * LIMIT)))
        answer = _read_answer(s, 10)
        assert _status(answer) == 413, answer[:200]

    # 2. A chunked body with no length that grows past the limit: 413 or the connection closed.
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(_post_head(b"Transfer-Encoding: chunked\r\n"))
        pieces = iter([_lead_prefix("chunked@example.com"), *[b"x" * 8192] * 64, b'"}'])  # 512 KiB
        _chunked(s, pieces)
        answer = _read_answer(s, 10)
        seen["chunked"] = _status(answer)
        assert _status(answer) in (413, None), answer[:200]

    # 3. gzip bombs: 60 MiB inflated behind a Content-Length under the limit, and 1 GiB chunked.
    bomb = b"".join(_gzip_bomb(60 << 20))
    assert len(bomb) < LIMIT
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(_post_head(b"Content-Encoding: gzip\r\nContent-Length: %d\r\n" % len(bomb)) + bomb)
        answer = _read_answer(s, 15)
        seen["gzip CL"] = _status(answer)
        assert _status(answer) in (400, 413), answer[:200]
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(_post_head(b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"))
        _chunked(s, _gzip_bomb(1 << 30))
        answer = _read_answer(s, 15)
        seen["gzip chunked"] = _status(answer)
        assert _status(answer) in (400, 413, None), answer[:200]

    grown_mib = (_rss_kib(d.proc.pid) - rss_before) / 1024
    print(f"\noversized bodies: answers {seen}, daemon RSS grew {grown_mib:.1f} MiB")
    assert grown_mib < 100, f"RSS grew {grown_mib:.0f} MiB while refusing oversized bodies"
    _assert_still_serving(d.port)
    assert _stored_leads(tmp_path) == 1  # only the lead posted after the abuse
    assert d.terminate() == 0
