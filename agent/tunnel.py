"""Forwarding one session: bytes between the tunnel WebSocket and the TCP target.

The agent never looks at the bytes. Either side ending ends the session and
both are closed, so neither the server nor the target is left holding a
half-dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024  # the contract's largest frame
CLOSE_TIMEOUT = 5.0


@dataclass
class TunnelStats:
    to_target: int = 0
    from_target: int = 0
    ended_by: str = ""


async def _target_to_tunnel(reader: asyncio.StreamReader, ws: ClientConnection, stats: TunnelStats) -> str:
    while True:
        data = await reader.read(CHUNK_SIZE)
        if not data:
            return "the target closed the connection"
        # send() waits while the socket's write buffer is full, so a slow
        # server slows our reads from the target instead of growing memory.
        await ws.send(data)
        stats.from_target += len(data)


async def _tunnel_to_target(ws: ClientConnection, writer: asyncio.StreamWriter, stats: TunnelStats) -> str:
    async for message in ws:
        if isinstance(message, str):
            # Some peers signal the end with a text frame ("## Shutdown ##");
            # the target must never see it as data.
            return f"the server ended the session with a text frame {message[:40]!r}"
        writer.write(message)
        await writer.drain()
        stats.to_target += len(message)
    return _closed_reason(ws)


def _closed_reason(ws: ClientConnection) -> str:
    code = ws.close_code
    if code is None:
        return "the tunnel closed"
    reason = f" ({ws.close_reason})" if ws.close_reason else ""
    if code == 4403:
        return f"the server refused the tunnel (code 4403){reason}"
    return f"the server closed the tunnel (code {code}){reason}"


def _describe(task: asyncio.Task[str], ws: ClientConnection) -> str:
    exc = task.exception()
    if exc is None:
        return task.result()
    if isinstance(exc, ConnectionClosed):
        return _closed_reason(ws)
    if isinstance(exc, ConnectionResetError):
        return "the target reset the connection"
    if isinstance(exc, OSError):
        return f"the target connection failed: {exc.strerror or exc}"
    return f"forwarding failed: {exc!r}"


async def forward(
    ws: ClientConnection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> TunnelStats:
    """Forward until either side ends, then close both; return what went through."""
    stats = TunnelStats()
    up = asyncio.create_task(_target_to_tunnel(reader, ws, stats))
    down = asyncio.create_task(_tunnel_to_target(ws, writer, stats))
    close_code = 1000
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        stats.ended_by = _describe(done.pop(), ws)
    except asyncio.CancelledError:
        # The agent is shutting down: tell the server the device went away.
        close_code = 1001
        stats.ended_by = "the agent is shutting down"
        raise
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        await close_both(ws, writer, close_code)
    return stats


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
