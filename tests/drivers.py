"""Helpers for the crash and outage tests: a fault-injecting TCP proxy, SMTP stand-ins, figures.

Nothing here replaces leadbox code: these are the *remote ends* (a flaky network path, a
misbehaving mail server) and the measuring tape. Every server runs in its own thread with
its own event loop, so a test that drives an in-process daemon on its loop measures the
daemon, not the fault injector.
"""

from __future__ import annotations

import asyncio
import email
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

LONG = os.environ.get("LEADBOX_LONG", "") not in ("", "0")

# Modes of FaultProxy.
PASS, DOWN, SLOW = "pass", "down", "slow"
HTTP_500, HTTP_429, HTTP_JUNK = "http500", "http429", "httpjunk"
SMTP_4XX, BYTES = "smtp4xx", "bytes"
MODES = (PASS, DOWN, SLOW, HTTP_500, HTTP_429, HTTP_JUNK, SMTP_4XX, BYTES)


class FaultProxy:
    """A TCP proxy on a fixed 127.0.0.1 port in front of ``target``, with switchable faults.

    - ``pass``: forward bytes both ways.
    - ``down``: not listening (connection refused), like a stopped server.
    - ``slow``: forward, but hold every chunk coming back from the server ``delay`` seconds.
    - ``http500`` / ``http429`` / ``httpjunk``: answer every HTTP request itself with a 500,
      a 429 (``Retry-After: 1``) or a 200 whose JSON body is cut off mid-way.
    - ``smtp4xx``: greet with 220, then answer every command with ``451 4.3.0``.
    - ``bytes``: accept and send binary garbage, never a protocol answer.

    Switching the mode cuts every open connection, so a kept-alive connection cannot
    carry on in the old mode.
    """

    def __init__(self, target_host: str, target_port: int, delay: float = 0.5) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.mode = PASS
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._call(self._listen())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def set(self, mode: str, delay: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if delay is not None:
            self.delay = delay
        self._call(self._switch(mode))

    @contextmanager
    def fault(self, mode: str, delay: float | None = None) -> Iterator[None]:
        self.set(mode, delay)
        try:
            yield
        finally:
            self.set(PASS)

    def close(self) -> None:
        self._call(self._switch(DOWN))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _switch(self, mode: str) -> None:
        self.mode = mode
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if mode == DOWN and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif mode != DOWN and self._server is None:
            await self._listen()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        mode = self.mode
        try:
            if mode in (PASS, SLOW):
                await self._forward(reader, writer, mode == SLOW)
            elif mode in (HTTP_500, HTTP_429, HTTP_JUNK):
                await self._http(reader, writer, mode)
            elif mode == SMTP_4XX:
                writer.write(b"220 flaky.example ESMTP\r\n")
                while await reader.readline():
                    writer.write(b"451 4.3.0 Temporary local problem, try again later\r\n")
                    await writer.drain()
            else:  # BYTES
                writer.write(bytes(random.randrange(256) for _ in range(64)) + b"\r\n")
                await writer.drain()
                while await reader.read(4096):
                    pass
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            return
        self._writers.add(up_w)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if hold:
                        await asyncio.sleep(self.delay)
                    dst.write(chunk)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_w, False), pipe(up_r, writer, slow))
        finally:
            self._writers.discard(up_w)

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: str) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            if mode == HTTP_500:
                status, extra, body = b"500 Internal Server Error", b"", b'{"error": {"message": "boom"}}'
            elif mode == HTTP_429:
                status, extra, body = b"429 Too Many Requests", b"Retry-After: 1\r\n", b'{"error": {}}'
            else:
                status, extra, body = b"200 OK", b"", b'{"choices": [{"message": {"content": "{\\"cat'
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n" + extra
                         + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()


class SlowSink:
    """aiosmtpd handler that takes each message, then waits ``delay`` seconds before saying 250.

    A real MTA queues the message when the final dot arrives and only then answers; if the
    answer is slow the client may give up although the message is on its way. The message is
    recorded before the wait, so a client that times out and sends again shows as a duplicate.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.messages: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        with self._lock:
            self.messages.append(content if isinstance(content, bytes) else str(content).encode())
        await asyncio.sleep(self.delay)
        return "250 OK"


class DropAfterDataSink(SlowSink):
    """Takes each message and answers 250, then drops the connection: the client's QUIT fails."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        status = await super().handle_DATA(server, session, envelope)
        transport = server.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(0.05, transport.abort)
        return status


def slow_smtp(cert: Any, users: dict[str, str], delay: float, port: int,
              sink: SlowSink | None = None) -> tuple[Controller, SlowSink]:
    """An implicit-TLS SMTP server with AUTH whose DATA answer comes ``delay`` seconds late."""
    sink = sink or SlowSink(delay)

    def auth(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and users.get(data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    c = Controller(sink, hostname="127.0.0.1", port=port, ssl_context=cert.server_context(),
                   authenticator=auth, auth_required=True, auth_require_tls=False)
    c.start()
    return c, sink


# ------------------------------------------------------------------ leads and figures


def lead_mail(sender: str, name: str, text: str, message_id: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "leads@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content(text + "\n")
    return msg.as_bytes()


def lead_header(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=policy.default)["X-Leadbox-Lead"])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def figures(values: list[float]) -> str:
    """p50 / p99 / max in milliseconds, as printed in the reports."""
    return (f"n={len(values)} p50={percentile(values, 50) * 1000:.1f}ms "
            f"p99={percentile(values, 99) * 1000:.1f}ms max={max(values, default=0) * 1000:.1f}ms")


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the daemon's SQLite file from outside (WAL: readers never block the writer)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) for r in con.execute(sql, args).fetchall()]
    finally:
        con.close()


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0
