"""A session page in the browser: its WebSocket on one side, a protocol
bridge (SSH, Telnet, VNC) over the device's tunnel on the other.

Page protocol: binary frames carry the session's bytes both ways (terminal
bytes, or RFB for noVNC); text frames carry JSON control messages: from the
page `{"type": "resize", "cols", "rows"}`, to the page
`{"type": "status", "state", "message"}` and
`{"type": "host-key", "fingerprint", "verified", "saved"}`. noVNC ignores
text frames (they reach it as empty data); the page reads them itself.
"""

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.db import database_sync_to_async

from endpoints import keys
from endpoints.models import Endpoint, Protocol, RemoteAccessSettings
from sessions import operations
from sessions.bridges.base import BridgeResult, Input, Resize
from sessions.bridges.rfb import RfbOptions, run_vnc
from sessions.bridges.ssh import SshCredentials, SshOptions, run_ssh
from sessions.bridges.telnet import TelnetOptions, run_telnet
from sessions.client_side import ClientSession
from sessions.models import Operation
from sessions.bridge_stream import BridgeStream
from sessions.relay import CHUNK, Closed, Side
from sessions.session_end import record_end

log = logging.getLogger(__name__)

MAX_SIZE = 1000


def terminal_size(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if 1 <= number <= MAX_SIZE else default


class Page:
    """The browser's side: its frames as bridge events, and what to show it."""

    def __init__(self, receive: Any, send: Any) -> None:
        self.receive = receive
        self._send = send
        self.events: asyncio.Queue = asyncio.Queue()
        self.gone = asyncio.Event()
        self.closed = False

    async def read_frames(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                self.gone.set()
                await self.events.put(None)
                return
            if message["type"] != "websocket.receive":
                continue
            if message.get("bytes") is not None:
                await self.events.put(Input(message["bytes"]))
                continue
            try:
                control = json.loads(message.get("text") or "")
            except json.JSONDecodeError:
                continue
            if isinstance(control, dict) and control.get("type") == "resize":
                cols, rows = terminal_size(control.get("cols"), 0), terminal_size(control.get("rows"), 0)
                if cols and rows:
                    await self.events.put(Resize(cols, rows))

    async def output(self, data: bytes) -> None:
        if self.gone.is_set():
            return
        for start in range(0, len(data), CHUNK):
            await self._send({"type": "websocket.send", "bytes": data[start : start + CHUNK]})

    async def message(self, **fields: Any) -> None:
        if not self.gone.is_set():
            await self._send({"type": "websocket.send", "text": json.dumps(fields)})

    async def status(self, state: str, message: str = "") -> None:
        await self.message(type="status", state=state, message=message)

    async def close(self) -> None:
        if not self.gone.is_set() and not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self._send({"type": "websocket.close", "code": 1000})


class PageBytes:
    """The page's binary frames as a byte stream, for bridges whose browser
    side speaks the protocol itself (noVNC speaks RFB)."""

    def __init__(self, page: Page) -> None:
        self.page = page

    async def read(self) -> bytes:
        while True:
            event = await self.page.events.get()
            if event is None:
                return b""
            if isinstance(event, Input) and event.data:
                return event.data

    async def write(self, data: bytes) -> None:
        await self.page.output(data)


@database_sync_to_async
def endpoint_of(operation: Operation) -> Endpoint | None:
    """The endpoint with its secrets decrypted. This runs a query."""
    return Endpoint.objects.filter(pk=operation.endpoint_id).select_related("device").first()


@database_sync_to_async
def save_host_key_on_first_use(endpoint_id: int, host_key: str) -> bool:
    if not RemoteAccessSettings.load().auto_save_host_key:
        return False
    return bool(Endpoint.objects.filter(pk=endpoint_id, host_key="").update(host_key=host_key))


async def run_bridge(endpoint: Endpoint, stream: BridgeStream, page: Page, cols: int, rows: int) -> BridgeResult:
    offered = ""

    async def status(state: str, message: str) -> None:
        nonlocal offered
        if state == "host-key":
            offered = message
            return
        await page.status(state, message)
        if state == "connected" and endpoint.protocol == Protocol.SSH:
            await show_host_key(endpoint, offered, page)

    if endpoint.protocol == Protocol.SSH:
        credentials = SshCredentials(endpoint.username, endpoint.password, endpoint.private_key)
        options = SshOptions(host_key=endpoint.host_key, cols=cols, rows=rows)
        return await run_ssh(stream, credentials, options, page.events, page.output, status)
    if endpoint.protocol == Protocol.VNC:
        return await run_vnc(stream, RfbOptions(password=endpoint.password), PageBytes(page), status)
    return await run_telnet(stream, TelnetOptions(cols=cols, rows=rows), page.events, page.output, status)


async def show_host_key(endpoint: Endpoint, offered: str, page: Page) -> None:
    """Once logged in: the pinned key was verified, or the offered key is
    shown unverified, and saved when the site saves keys on first use."""
    if endpoint.host_key:
        await page.message(type="host-key", fingerprint=keys.fingerprint(endpoint.host_key), verified=True,
                           saved=False)
        return
    saved = await save_host_key_on_first_use(endpoint.pk, offered)
    if saved:
        log.info("host key of endpoint %s saved on first use", endpoint.pk)
    await page.message(type="host-key", fingerprint=keys.fingerprint(offered), verified=False, saved=saved)


async def run_page(
    scope: dict[str, Any], receive: Any, send: Any, operation: Operation, user: Any, client_address: str | None
) -> None:
    """Relay and bridge until either end; tell the page why it ended."""
    page = Page(receive, send)
    reader = asyncio.create_task(page.read_frames())
    relay_task: asyncio.Task[Closed] | None = None
    gone: asyncio.Task[bool] | None = None
    query = scope.get("query", {})
    cols, rows = terminal_size(query.get("cols"), 80), terminal_size(query.get("rows"), 24)
    try:
        endpoint = await endpoint_of(operation)
        if endpoint is None:
            await page.status("disconnected", "the endpoint was removed")
            return
        await page.status("connecting", "connecting to device…")
        stream = BridgeStream()
        side = Side("client", stream.receive, stream.send, text_ends=False)
        session = ClientSession(side, endpoint, user, client_address, operation=operation)
        relay_task = asyncio.create_task(session.run())
        joined = asyncio.create_task(side.joined.wait())
        gone = asyncio.create_task(page.gone.wait())
        await asyncio.wait({relay_task, joined, gone}, return_when=asyncio.FIRST_COMPLETED)
        joined.cancel()
        if side.joined.is_set() and not page.gone.is_set():
            await page.status("device-connected", "device connected")
            result = await run_bridge(endpoint, stream, page, cols, rows)
            await finish_bridge(operation, result, page, session)
        await stream.close()
        closed: Closed = await relay_task
        gone.cancel()
        if not side.joined.is_set():
            await page.status("disconnected", closed.reason)
    finally:
        reader.cancel()
        if gone is not None:
            gone.cancel()
        if relay_task is not None and not relay_task.done():
            # The bridge's end failed (e.g. the database gave up): the
            # device's tunnel must not outlive the page.
            relay_task.cancel()
            await asyncio.gather(relay_task, return_exceptions=True)
        await page.close()


async def finish_bridge(operation: Operation, result: BridgeResult, page: Page, session: ClientSession) -> None:
    reason = result.reason
    if session.failure.done():
        # The device's own report says more than "the connection was lost".
        reason = session.failure.result()
    if result.failed:
        await database_sync_to_async(operations.fail_session)(operation.pk, reason)
    log.info("operation %s: session ended: %s", operation.pk, reason)
    await page.status("disconnected", reason)
    # The relay may have ended and written its own reason already (the
    # device's tunnel closed first); the audit keeps the words the page shows.
    session.end_reason = reason
    await record_end(operation.pk, reason=reason, final=True)
