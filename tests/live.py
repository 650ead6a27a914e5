"""Real processes on loopback for the tests that cross them: the server running
the gateway, the device agent, redis-server, and a TCP echo target.

Every wait is bounded and waits for a port, a line or an event, never a
fixed sleep.
"""

import asyncio
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from websockets.sync.client import ClientConnection, connect

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from endpoints.models import Device

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def need(program: str) -> str:
    """The program's path; skip without it, but fail under CI."""
    path = shutil.which(program) or next(
        (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}") if os.path.exists(p)), None
    )
    if path is None:
        message = f"{program} is not installed (Debian: see .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listened on {port} within {timeout} s")


def stop_process(process: subprocess.Popen | None, timeout: float = 10) -> None:
    """Terminate, and kill if it will not go."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@contextmanager
def printed_log(*servers: "Gateway") -> Iterator[None]:
    """Print the servers' log lines of what runs inside: pytest shows them
    when a test fails."""
    starts = [len(server.output.lines) for server in servers]
    yield
    for server, start in zip(servers, starts):
        print(f"--- server on {server.port}")
        print("\n".join(server.output.lines[start:]))


def wait_until(predicate, timeout: float = 10, what: str = "the condition") -> None:
    """Poll a database state that no port or line announces."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


class LineReader:
    """Collects a process's output lines so a test can wait for one."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            self._new.put(line)

    def wait_for(self, pattern: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines[-30:]))
            try:
                line = self._new.get(timeout=remaining)
            except queue.Empty:
                continue
            if regex.search(line):
                return line


def server_env(**extra: str) -> dict[str, str]:
    """The environment of a gateway process that shares the tests' database."""
    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("sqlite3"):
        raise RuntimeError("live tests need the file-based SQLite test database")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "REMOTE_ACCESS_SECRET_KEY": ",".join(settings.REMOTE_ACCESS_SECRET_KEYS),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        # Where the HTTPS listener's self-signed certificate is made.
        "DATA_DIR": tempfile.mkdtemp(prefix="gateway-data-"),
    }
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


class Gateway:
    """`manage.py serve` on a loopback port (ASGI_SERVER in env picks the server)."""

    def __init__(self, port: int | None = None, tls: bool = False, **env: str) -> None:
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.env = server_env(**env)
        self.process: subprocess.Popen | None = None
        self.output: LineReader | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def start(self) -> "Gateway":
        command = [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.tls_port:
            command += ["--tls-port", str(self.tls_port)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.output = LineReader(self.process.stdout)
        wait_for_port(self.port, self.process)
        if self.tls_port:
            wait_for_port(self.tls_port, self.process)
        return self

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.env["DATA_DIR"], ignore_errors=True)


class Agent:
    """The real device agent (`python -m agent run`) for a registered device."""

    def __init__(self, config_dir: Path, server: str, device, allow: list[str] | None = None,
                 ping_interval: float | None = None) -> None:
        from agent.config import DEFAULT_PING_INTERVAL, AgentConfig, save_config

        token = device.issue_token()
        device.save(update_fields=["token_hash", "otp_hash", "otp_expires_at", "registered_at"])
        self.path = config_dir / f"agent-{device.serial}.toml"
        save_config(
            AgentConfig(server=server, device_id=device.serial, username=device.username, password=token,
                        allow=allow if allow is not None else ["127.0.0.0/8"],
                        ping_interval=ping_interval or DEFAULT_PING_INTERVAL),
            self.path,
        )
        self.process: subprocess.Popen | None = None
        self.output: LineReader | None = None

    def start(self) -> "Agent":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.path)],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.output = LineReader(self.process.stdout)
        return self

    def wait_online(self, timeout: float = 15) -> None:
        self.output.wait_for("control channel connected", timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.process)


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event | None = None) -> None:
    """Copy what the reader gives to the writer until the stream ends or the
    connection breaks; while a gate is clear, nothing moves."""
    try:
        while True:
            if gate is not None:
                await gate.wait()
            data = await reader.read(65536)
            if gate is not None:
                # What was read when the gate closed is held back with the rest.
                await gate.wait()
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass


class EchoServer:
    """A TCP echo target on 127.0.0.1, in its own thread and event loop.

    `closed` is set when a connection ends; `close_all()` ends them from the
    target's side.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.connected = threading.Event()
        self.closed = threading.Event()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.connected.set()
        try:
            await pump(reader, writer)
        finally:
            writer.close()
            self.closed.set()

    def close_all(self) -> None:
        for writer in self.writers:
            self.loop.call_soon_threadsafe(writer.close)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class RedisServer:
    """A throwaway redis-server on a loopback port, which a test may stop and
    start again on the same port."""

    def __init__(self) -> None:
        self.program = need("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        stop_process(self.process)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


def clean_database() -> None:
    """Remove what live tests made, but not the content types and permissions:
    a flush would recreate those with new ids, which the gateway processes
    have cached."""
    from django.contrib.auth.models import Group, User
    from guardian.models import GroupObjectPermission, UserObjectPermission

    from endpoints.models import Device, DeviceGroup, Endpoint
    from portal.models import ApiToken
    from sessions.models import Operation

    for model in (Operation, Endpoint, ApiToken, UserObjectPermission, GroupObjectPermission, Device,
                  DeviceGroup, User, Group):
        model.objects.all().delete()


@contextmanager
def live_database(django_db_blocker) -> Iterator[None]:
    """Database access in autocommit for a whole module, so that gateway
    processes see each change at once; what the tests made is removed after.

    Not pytest-django's transactional_db: its flush after every test makes
    Django recreate content types and permissions under new ids, which the
    gateway processes have cached.
    """
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        created = None
        # pytest-django sets the test database up only when some collected
        # test is marked for it; this module alone may not be.
        if not str(connection.settings_dict["NAME"]).endswith("test.sqlite3"):
            created = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        clean_database()
        try:
            yield
        finally:
            clean_database()
            if created is not None:
                teardown_databases(created, verbosity=0)


@contextmanager
def live_gateway(django_db_blocker, tls: bool = False, **env: str) -> Iterator[Gateway]:
    """A gateway in its own process on the live test database, for a module."""
    with live_database(django_db_blocker):
        gateway = Gateway(tls=tls, **env).start()
        try:
            yield gateway
        finally:
            gateway.stop()


def fresh_device(serial: str, name: str, permission: str = "remote_access_read") -> tuple["Device", "User"]:
    """A database emptied of what live tests made, then one device and the
    user "tech" holding the permission on it: (device, user)."""
    from django.contrib.auth.models import User
    from guardian.shortcuts import assign_perm

    from endpoints.models import Device

    clean_database()
    device = Device.objects.create(serial=serial, name=name)
    user = User.objects.create_user("tech", password="tech-pass-1")
    assign_perm(permission, user, device)
    return device, user


def open_session_page(gateway: Gateway, operation_id: int, query: str, session_id: str,
                      **options) -> ClientConnection:
    """A session page's WebSocket as the browser opens it: the launch token in
    the query, the login's cookie and the gateway's own origin."""
    return connect(
        f"{gateway.ws_url}/ws/sessions/{operation_id}/?{query}",
        additional_headers={"Cookie": f"sessionid={session_id}", "Origin": gateway.url},
        open_timeout=10, **options,
    )


def echo_round_trip(ws: ClientConnection, data: bytes = b"ping") -> None:
    """What the client sends comes back from an echo target."""
    ws.send(data)
    received = ws.recv(timeout=10)
    # The message, since pytest rewrites asserts only in test modules.
    assert received == data, f"{received!r} came back for {data!r}"


def send_while_receiving(ws: ClientConnection, payload: bytes, timeout: float) -> bytes:
    """Send the payload in 64 KiB frames from a thread while receiving until
    as many bytes came back; returns what came back."""
    received = bytearray()

    def send_all() -> None:
        for start in range(0, len(payload), 64 * 1024):
            ws.send(payload[start : start + 64 * 1024])

    sender = threading.Thread(target=send_all)
    sender.start()
    while len(received) < len(payload):
        received += ws.recv(timeout=timeout)
    sender.join(timeout)
    return bytes(received)
