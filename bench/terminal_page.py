"""A terminal page's WebSocket as terminal.js uses it, many at once: Connect,
the page WebSocket with its launch token, then `cat` on a raw tty, so that
every byte typed comes back exactly as it was typed."""

import asyncio
import json
import random
import string
import time

from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection, connect

from bench.ssh_site import TerminalSite

# Raw and without echo: the tty hands cat every byte as it comes and adds
# none. The marker is split so that the shell's echo of the line never
# contains it.
START_CAT = b"stty raw -echo; printf 'R%sY\\n' EAD; exec cat\r"
READY = b"READY\n"
# Letters and digits: what a typist sends, and nothing the tty could act on.
TYPEABLE = (string.ascii_letters + string.digits).encode()
ECHO_TIMEOUT = 30


class SessionError(Exception):
    """The session ended or answered wrongly; the message says how."""


def typed(length: int) -> bytes:
    return bytes(random.choices(TYPEABLE, k=length))


class TerminalPage:
    def __init__(self, websocket: ClientConnection, operation_id: int) -> None:
        self.websocket = websocket
        self.operation_id = operation_id
        self.output = b""
        self.connected = False
        self.bytes_sent = 0
        self.bytes_received = 0

    async def _take(self) -> None:
        frame = await self.websocket.recv()
        if isinstance(frame, bytes):
            self.output += frame
            self.bytes_received += len(frame)
            return
        message = json.loads(frame)
        if message.get("type") == "status" and message.get("state") == "disconnected":
            raise SessionError(f"operation {self.operation_id} disconnected: {message.get('message')}")
        if message.get("type") == "status" and message.get("state") == "connected":
            self.connected = True

    async def wait_until_connected(self) -> None:
        while not self.connected:
            await self._take()

    async def wait_for_output(self, marker: bytes) -> None:
        """Until marker has come; what came up to it is dropped."""
        while marker not in self.output:
            await self._take()
        self.output = self.output.split(marker, 1)[1]

    async def send(self, data: bytes) -> None:
        await self.websocket.send(data)
        self.bytes_sent += len(data)

    async def echo(self, data: bytes) -> float:
        """Seconds until data came back; SessionError if other bytes did."""
        start = time.perf_counter()
        await self.send(data)
        while len(self.output) < len(data):
            await self._take()
        elapsed = time.perf_counter() - start
        back, self.output = self.output[: len(data)], self.output[len(data) :]
        if back != data:
            raise SessionError(f"operation {self.operation_id}: typed {data!r:.60}, got {back!r:.60}")
        return elapsed

    async def close(self) -> None:
        await self.websocket.close()


async def open_page(site: TerminalSite, cols: int = 80, rows: int = 24) -> TerminalPage:
    """Connect, log in, start cat; the caller bounds the time."""
    operation_id, launch = await sync_to_async(site.connect)()
    ws_url = site.gateway_url.replace("http://", "ws://", 1)
    websocket = await connect(
        f"{ws_url}/ws/sessions/{operation_id}/?launch={launch}&cols={cols}&rows={rows}",
        additional_headers={"Cookie": f"sessionid={site.session_cookie}", "Origin": site.gateway_url},
        compression=None,
    )
    page = TerminalPage(websocket, operation_id)
    try:
        await page.wait_until_connected()
        await page.send(START_CAT)
        await page.wait_for_output(READY)
    except BaseException:
        await websocket.close()
        raise
    return page


async def open_checked_page(site: TerminalSite) -> TerminalPage:
    """A page whose first typing came back right."""
    page = await open_page(site)
    try:
        await page.echo(typed(16))
    except BaseException:
        await page.close()
        raise
    return page


async def type_after_pause(page: TerminalPage, interval: float) -> float:
    """A typist's pause (random, so that sessions do not march in step, mean
    interval), then a burst of 1 to 32 keys; seconds until they came back."""
    await asyncio.sleep(random.uniform(0, 2 * interval))
    async with asyncio.timeout(ECHO_TIMEOUT):
        return await page.echo(typed(random.randint(1, 32)))
