"""Forwarding one connection: bytes between a tunnel WebSocket and a local stream.

The agent forwards to the TCP target, the local proxy (``agent.client``) to a
technician's client; only the words for how it ended differ (a ``Wording``).
Neither looks at the bytes. Either side ending ends the forwarding and both
are closed, so neither the server nor the local peer is left holding a
half-dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

CHUNK_SIZE = 64 * 1024  # the contract's largest frame
CLOSE_TIMEOUT = 5.0
GOING_AWAY = 1001


class Reader(Protocol):
    async def read(self, n: int) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class Wording(Protocol):
    """How one side tells the ways a forwarding ends."""

    local_closed: str
    shutting_down: str

    def text_frame(self, message: str) -> str: ...
    def tunnel_closed(self, code: int | None, reason: str) -> str: ...
    def local_error(self, exc: OSError) -> str: ...
    def unexpected(self, exc: BaseException) -> str: ...


class TargetWording:
    """The agent's: the local side is the TCP target."""

    local_closed = "the target closed the connection"
    shutting_down = "the agent is shutting down"

    def text_frame(self, message: str) -> str:
        return f"the server ended the session with a text frame {message[:40]!r}"

    def tunnel_closed(self, code: int | None, reason: str) -> str:
        if code is None:
            return "the tunnel closed"
        detail = f" ({reason})" if reason else ""
        if code == 4403:
            return f"the server refused the tunnel (code 4403){detail}"
        return f"the server closed the tunnel (code {code}){detail}"

    def local_error(self, exc: OSError) -> str:
        if isinstance(exc, ConnectionResetError):
            return "the target reset the connection"
        return f"the target connection failed: {exc.strerror or exc}"

    def unexpected(self, exc: BaseException) -> str:
        return f"forwarding failed: {exc!r}"


@dataclass
class Forwarded:
    from_local: int = 0  # local side -> tunnel
    to_local: int = 0  # tunnel -> local side
    ended_by: str = ""
    failed: bool = False  # the tunnel ended with an error, not by either side closing


async def _local_to_tunnel(reader: Reader, ws: ClientConnection, forwarded: Forwarded, wording: Wording) -> str:
    while data := await reader.read(CHUNK_SIZE):
        # send() waits while the socket's write buffer is full, so a slow
        # server slows our reads from the local side instead of growing memory.
        await ws.send(data)
        forwarded.from_local += len(data)
    return wording.local_closed


async def _tunnel_to_local(ws: ClientConnection, writer: Writer, forwarded: Forwarded, wording: Wording) -> str:
    async for message in ws:
        if isinstance(message, str):
            # The contract has binary frames only; some peers signal the end
            # with a text frame ("## Shutdown ##"): it is never data.
            forwarded.failed = True
            return wording.text_frame(message)
        writer.write(message)
        await writer.drain()
        forwarded.to_local += len(message)
    return _tunnel_closed(ws, forwarded, wording)


def _tunnel_closed(ws: ClientConnection, forwarded: Forwarded, wording: Wording) -> str:
    if ws.close_code != 1000:
        forwarded.failed = True
    return wording.tunnel_closed(ws.close_code, ws.close_reason or "")


def _describe(task: asyncio.Task[str], ws: ClientConnection, forwarded: Forwarded, wording: Wording) -> str:
    exc = task.exception()
    if exc is None:
        return task.result()
    if isinstance(exc, ConnectionClosed):
        return _tunnel_closed(ws, forwarded, wording)
    if isinstance(exc, OSError):
        return wording.local_error(exc)
    forwarded.failed = True
    return wording.unexpected(exc)


async def forward(
    ws: ClientConnection,
    reader: Reader,
    writer: Writer,
    wording: Wording,
) -> Forwarded:
    """Forward until either side ends, then close both; return what went through and how it ended."""
    forwarded = Forwarded()
    up = asyncio.create_task(_local_to_tunnel(reader, ws, forwarded, wording))
    down = asyncio.create_task(_tunnel_to_local(ws, writer, forwarded, wording))
    close_code = 1000
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        forwarded.ended_by = _describe(done.pop(), ws, forwarded, wording)
    except asyncio.CancelledError:
        # Shutting down: tell the server this side went away.
        close_code = GOING_AWAY
        forwarded.ended_by = wording.shutting_down
        raise
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        await close_both(ws, writer, close_code)
    return forwarded


async def close_both(ws: ClientConnection | None, writer: Any, code: int = 1000) -> None:
    """Close the tunnel and the local connection (a StreamWriter or alike),
    never raising, within a bounded time."""
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.close()
    if ws is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code), CLOSE_TIMEOUT)
    if writer is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
