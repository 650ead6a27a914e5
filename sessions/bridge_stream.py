"""The client side of a session for a protocol bridge on this server."""

import asyncio
import contextlib
from typing import Any

from sessions.relay import WINDOW


class BridgeStream:
    """The client side of a session for a protocol bridge on this server.

    To the bridge it is a byte stream (read/write/close); to the relay's Side
    it looks like a WebSocket (`receive`/`send`), so the relay needs no
    second code path.
    """

    def __init__(self) -> None:
        self._to_device: asyncio.Queue[dict[str, Any]] = asyncio.Queue(WINDOW)
        self._from_device: asyncio.Queue[bytes] = asyncio.Queue(WINDOW)
        self._closed = False
        self._device_closed = False
        self._eof = False

    async def read(self) -> bytes:
        if self._eof or (self._device_closed and self._from_device.empty()):
            self._eof = True
            return b""
        data = await self._from_device.get()
        if not data:
            self._eof = True
        return data

    async def write(self, data: bytes) -> None:
        if not self._closed and data:
            await self._to_device.put({"type": "websocket.receive", "bytes": data})

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._to_device.put({"type": "websocket.disconnect", "code": 1000})

    async def receive(self) -> dict[str, Any]:
        return await self._to_device.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await self._from_device.put(message["bytes"])
        elif message["type"] == "websocket.close":
            # Never wait here: the bridge may have stopped reading.
            self._device_closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self._from_device.put_nowait(b"")
