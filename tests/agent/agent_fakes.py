"""Test doubles for the agent: a fake gateway playing the server side of the contract.

Registration is a tiny ``http.server`` in a thread; the control channel and
the tunnel endpoint are a real ``websockets`` server. Targets are real TCP
servers on 127.0.0.1. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import base64
import contextlib
import csv
import io
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from agent.control import Agent, Backoff

CONTROL_PATH = "/service/remoteaccess/agent"
TUNNEL_PREFIX = "/service/remoteaccess/device/"
REGISTRATION_PATH = "/service/remoteaccess/registration"

SERIAL = "SN-0001"
USERNAME = f"device_{SERIAL}"
PASSWORD = 'tok"en\\with,odd=chars'
WAIT = 5.0  # upper bound for any single expected event

REPO_ROOT = Path(__file__).resolve().parents[2]


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def parse_csv(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line)))


# --- registration -----------------------------------------------------------


class RegistrationServer:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.one_time_password = "otp-123456"
        self.issued_password = 'device-token-Ω-"quoted"'
        self.used = False
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer.lock:
                    outer.requests.append(body)
                    good = (
                        self.path == REGISTRATION_PATH
                        and self.headers.get("Content-Type") == "application/json"
                        and body.get("deviceId") == SERIAL
                        and body.get("oneTimePassword") == outer.one_time_password
                        and not outer.used
                    )
                    if good:
                        outer.used = True
                if good:
                    answer = json.dumps({"username": USERNAME, "password": outer.issued_password}).encode()
                    self.send_response(200)
                else:
                    answer = b'{"error": "invalid one-time password"}'
                    self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"


# --- control channel and tunnels ----------------------------------------------


@dataclass
class ControlPeer:
    """The server's end of one control channel connection."""

    ws: ServerConnection
    raw: list[str] = field(default_factory=list)
    lines: asyncio.Queue[list[str]] = field(default_factory=asyncio.Queue)

    async def send(self, line: str) -> None:
        await self.ws.send(line)

    async def expect(self, timeout: float = WAIT) -> list[str]:
        return await asyncio.wait_for(self.lines.get(), timeout)

    async def pump(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                assert isinstance(message, str), "the agent must send text frames on the control channel"
                self.raw.append(message)
                await self.lines.put(parse_csv(message))


class FakeGateway:
    def __init__(self, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.authorization = basic(username, password)
        self.control_status: int | None = None  # refuse control upgrades with this status
        self.refused_keys: set[str] = set()
        self.controls: asyncio.Queue[ControlPeer] = asyncio.Queue()
        self.control_refusals: asyncio.Queue[int] = asyncio.Queue()
        self.tunnel_attempts: list[str] = []
        self._tunnels: dict[str, asyncio.Future[ServerConnection]] = {}
        self._server = None
        self.url = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            select_subprotocol=lambda _conn, offered: "binary" if "binary" in offered else None,
            ping_interval=None,
            ssl=ssl_context,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.wait_for(self._server.wait_closed(), WAIT)

    def _tunnel_future(self, key: str) -> asyncio.Future[ServerConnection]:
        return self._tunnels.setdefault(key, asyncio.get_running_loop().create_future())

    def _process_request(self, connection: ServerConnection, request):  # type: ignore[no-untyped-def]
        if request.headers.get("Origin") is not None:
            return connection.respond(400, "devices send no Origin\n")
        if request.headers.get("Authorization") != self.authorization:
            return connection.respond(401, "bad credentials\n")
        if request.path == CONTROL_PATH:
            if self.control_status is not None:
                self.control_refusals.put_nowait(self.control_status)
                return connection.respond(self.control_status, "not now\n")
            return None
        if request.path.startswith(TUNNEL_PREFIX):
            key = request.path[len(TUNNEL_PREFIX) :]
            self.tunnel_attempts.append(key)
            if key in self.refused_keys:
                return connection.respond(403, "unknown connection key\n")
            return None
        return connection.respond(404, "not found\n")

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path
        if path == CONTROL_PATH:
            peer = ControlPeer(ws)
            await self.controls.put(peer)
            await peer.pump()
        else:
            key = path[len(TUNNEL_PREFIX) :]
            self._tunnel_future(key).set_result(ws)
            # The test drives this connection; keep it open until it closes.
            await ws.wait_closed()

    async def next_control(self, timeout: float = WAIT) -> ControlPeer:
        return await asyncio.wait_for(self.controls.get(), timeout)

    async def tunnel(self, key: str, timeout: float = WAIT) -> ServerConnection:
        return await asyncio.wait_for(asyncio.shield(self._tunnel_future(key)), timeout)


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``agent`` for the duration of the block, then stop it and check it stopped."""
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        agent.stop()
        await asyncio.wait_for(task, 2 * WAIT)


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.05)


# --- TCP targets ------------------------------------------------------------------


@dataclass
class TcpTarget:
    port: int
    connections: int = 0
    received: bytearray = field(default_factory=bytearray)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def tcp_server(handler) -> AsyncIterator[TcpTarget]:  # type: ignore[no-untyped-def]
    target = TcpTarget(port=0)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target.connections += 1
        await handler(target, reader, writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    target.port = server.sockets[0].getsockname()[1]
    try:
        yield target
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def exchange(tunnel: ServerConnection, payload: bytes, chunk: int = 64 * 1024) -> bytes:
    """Send ``payload`` through the tunnel while reading back as many bytes."""

    async def send() -> None:
        for i in range(0, len(payload), chunk):
            await tunnel.send(payload[i : i + chunk])

    async def receive() -> bytes:
        received = bytearray()
        while len(received) < len(payload):
            message = await tunnel.recv()
            assert isinstance(message, bytes), "the tunnel must carry binary frames only"
            assert len(message) <= 64 * 1024
            received += message
        return bytes(received)

    _, echoed = await asyncio.wait_for(asyncio.gather(send(), receive()), 4 * WAIT)
    return echoed


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class HttpProxy:
    """A minimal HTTP proxy on loopback: CONNECT tunnels (what websockets sends)
    and absolute-form requests (what urllib sends for http:// URLs).

    It forwards to loopback only, and records every request line it served.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.wait_for(self._server.wait_closed(), WAIT)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, rest = head.split(b"\r\n", 1)
        method, target, version = request_line.decode().split(" ")
        self.requests.append(f"{method} {target}")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
        else:
            url = urlsplit(target)
            host, port = url.hostname or "", str(url.port)
        if host not in ("127.0.0.1", "localhost"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            origin_form = url.path + (f"?{url.query}" if url.query else "")
            up_writer.write(f"{method} {origin_form} {version}\r\n".encode() + rest)
        for task in (asyncio.create_task(_pipe(reader, up_writer)), asyncio.create_task(_pipe(up_reader, writer))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def make_certificate(directory: Path) -> Path:
    """A self-signed certificate (and key, in the same PEM file) for 127.0.0.1."""
    if shutil.which("openssl") is None:
        missing = pytest.fail if os.environ.get("CI") == "true" else pytest.skip
        missing("openssl is needed to make a test certificate")
    pem = directory / "server.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(pem),
            "-out",
            str(directory / "cert.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    pem.write_text(pem.read_text() + (directory / "cert.pem").read_text())
    return directory / "cert.pem"


def server_ssl_context(directory: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem")
    return context


class LogWaiter(logging.Handler):
    """Lets a test wait for a log message instead of sleeping."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.loop = asyncio.get_running_loop()
        self.messages: asyncio.Queue[str] = asyncio.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.loop.call_soon_threadsafe(self.messages.put_nowait, record.getMessage())

    async def wait_for(self, text: str, timeout: float = WAIT) -> str:
        async def scan() -> str:
            while text not in (message := await self.messages.get()):
                pass
            return message

        return await asyncio.wait_for(scan(), timeout)


@contextlib.contextmanager
def watching_logs(name: str) -> Iterator[LogWaiter]:
    waiter = LogWaiter()
    logger = logging.getLogger(name)
    logger.addHandler(waiter)
    try:
        yield waiter
    finally:
        logger.removeHandler(waiter)
