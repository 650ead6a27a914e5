"""The two terminals the benchmark compares, a shell on the same sshd with the
same user, terminal type and size: the browser page's WebSocket through the
gateway's SSH bridge and the agent, and a direct asyncssh PTY session."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Protocol
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, OpenerDirector, Request, build_opener

import asyncssh
from websockets.asyncio.client import ClientConnection, connect

from bench.terminal_world import TerminalWorld
from sessions.bridges.ssh import ENCRYPTION_ALGS, ENVIRONMENT, SshOptions
from sessions.bridges.transport import CHUNK
from tests.live import wait_until

HTTP_TIMEOUT = 15
END_TIMEOUT = 10  # within the callers' OPEN_TIMEOUT
COLS, ROWS = 80, 24
TERM = SshOptions().term  # what the bridge asks the server for


class Terminal(Protocol):
    async def send(self, data: bytes) -> None:
        """Keys typed, as the page sends them."""

    async def recv(self) -> bytes:
        """The next terminal output, at least one byte; an error once it ends."""

    async def close(self) -> None: ...


class Browser:
    """A logged-in user's cookies, and the Connect button, over real HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = CookieJar()
        self.opener: OpenerDirector = build_opener(HTTPCookieProcessor(self.cookies))

    def cookie(self, name: str) -> str:
        return next((c.value for c in self.cookies if c.name == name), "")

    def _post(self, path: str, fields: dict[str, str] | None = None) -> str:
        """The address of the page the POST redirected to, as a browser follows it."""
        request = Request(
            f"{self.base_url}{path}",
            data=urlencode(fields or {}).encode(),
            headers={"Origin": self.base_url, "X-CSRFToken": self.cookie("csrftoken")},
        )
        with self.opener.open(request, timeout=HTTP_TIMEOUT) as response:
            response.read()
            return response.geturl()

    def log_in(self, username: str, password: str) -> None:
        with self.opener.open(f"{self.base_url}/accounts/login/", timeout=HTTP_TIMEOUT) as response:
            response.read()
        self._post("/accounts/login/", {"username": username, "password": password})
        if not self.cookie("sessionid"):
            raise RuntimeError(f"logging in as {username} gave no session cookie")

    def connect(self, device_pk: int, endpoint_pk: int) -> tuple[int, str]:
        """Connect on the endpoint: (operation id, launch token) from the
        session page the browser lands on."""
        landed = urlsplit(self._post(f"/devices/{device_pk}/remote-access/{endpoint_pk}/connect/"))
        launch = parse_qs(landed.query).get("launch")
        if not landed.path.startswith("/sessions/") or not launch:
            raise RuntimeError(f"Connect landed on {landed.geturl()}, not on a session page")
        return int(landed.path.strip("/").split("/")[-1]), launch[0]


class PageTerminal:
    """The session page's WebSocket, as static/js/terminal.js drives it."""

    def __init__(self, websocket: ClientConnection, operation_id: int) -> None:
        self.websocket = websocket
        self.operation_id = operation_id

    async def send(self, data: bytes) -> None:
        await self.websocket.send(data)

    async def recv(self) -> bytes:
        while True:
            frame = await self.websocket.recv()
            if isinstance(frame, bytes):
                return frame
            message = json.loads(frame)
            if message.get("type") == "status" and message.get("state") == "disconnected":
                raise ConnectionError(f"the page was told: {message.get('message')}")

    async def close(self) -> None:
        """Close the page, and wait until the gateway has ended the session:
        its teardown would otherwise slow down the next measurement, which
        a user's next Connect would not meet."""
        await self.websocket.close()
        await asyncio.to_thread(wait_until, self._ended, END_TIMEOUT, f"the end of operation {self.operation_id}")

    def _ended(self) -> bool:
        from sessions.models import Operation

        return Operation.objects.filter(pk=self.operation_id, ended__isnull=False).exists()


async def open_page(world: TerminalWorld, browser: Browser) -> PageTerminal:
    """Connect (POST, then the session page), then the page's WebSocket."""
    operation_id, launch = await asyncio.to_thread(browser.connect, world.device_pk, world.endpoint_pk)
    query = urlencode({"launch": launch, "cols": COLS, "rows": ROWS})
    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    websocket = await connect(
        f"ws{world.gateway_url.removeprefix('http')}/ws/sessions/{operation_id}/?{query}",
        additional_headers={"Cookie": cookies, "Origin": world.gateway_url},
        # As in bench/paths.py: deflate would measure zlib.
        compression=None,
        open_timeout=HTTP_TIMEOUT,
    )
    return PageTerminal(websocket, operation_id)


class DirectTerminal:
    """A PTY shell over asyncssh straight to the sshd: the baseline."""

    def __init__(self, conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess) -> None:
        self.conn = conn
        self.process = process

    async def send(self, data: bytes) -> None:
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    async def recv(self) -> bytes:
        data = await self.process.stdout.read(CHUNK)
        if not data:
            raise ConnectionError("the direct SSH session ended")
        return data

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


async def open_direct(world: TerminalWorld) -> DirectTerminal:
    """The same login, ciphers, terminal and environment as the bridge's
    (sessions/bridges/ssh.py), so that the two differ only in the path."""
    conn = await asyncssh.connect(
        world.sshd_host,
        world.sshd_port,
        username=world.sshd_user,
        known_hosts=([asyncssh.import_public_key(world.sshd_host_key)], [], []),
        config=None,
        client_keys=[asyncssh.import_private_key(world.sshd_private_key)],
        agent_path=None,
        gss_host=None,
        preferred_auth=["publickey"],
        encryption_algs=ENCRYPTION_ALGS,
    )
    try:
        process = await conn.create_process(
            term_type=TERM,
            term_size=(COLS, ROWS),
            term_modes={asyncssh.PTY_IUTF8: 1},
            env=ENVIRONMENT,
            encoding=None,
            stderr=asyncssh.STDOUT,
        )
    except BaseException:
        conn.abort()
        raise
    return DirectTerminal(conn, process)


@dataclass(frozen=True)
class TerminalPath:
    name: str
    open: Callable[[], Awaitable[Terminal]]


def terminal_paths(world: TerminalWorld, browser: Browser) -> list[TerminalPath]:
    """The baseline first, the path under test last: the report's order."""
    return [
        TerminalPath("asyncssh direct", lambda: open_direct(world)),
        TerminalPath("browser page", lambda: open_page(world, browser)),
    ]
