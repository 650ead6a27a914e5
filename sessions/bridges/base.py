"""What every bridge is given and gives back."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class ByteStream(Protocol):
    """The device side: the raw bytes of the TCP connection on the device's LAN."""

    async def read(self) -> bytes:
        """The next bytes; b"" once the stream has ended."""

    async def write(self, data: bytes) -> None:
        """Send bytes; waits while the other end is behind."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Input:
    """Bytes the user typed or pasted (UTF-8)."""

    data: bytes


@dataclass(frozen=True)
class Resize:
    cols: int
    rows: int


# Browser events reach a bridge through an asyncio.Queue of Input | Resize;
# None means the page has gone.
BrowserEvents = asyncio.Queue  # of Input | Resize | None
Output = Callable[[bytes], Awaitable[None]]
# status(state, message): states are "handshake" (VNC), "authenticating",
# "connected" and "host-key" (message: the server's key as one OpenSSH line, not verified by
# a pinned key).
Status = Callable[[str, str], Awaitable[None]]


class BrowserBytes(Protocol):
    """A page that speaks a byte protocol itself (noVNC speaks RFB)."""

    async def read(self) -> bytes:
        """The next bytes from the page; b"" once it has gone."""

    async def write(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class BridgeResult:
    """How a session ended. `failed` marks a failure of the connection (bad
    credentials, host key mismatch, protocol error) that fails the operation;
    a session the user or the remote side ended normally is not failed."""

    reason: str
    failed: bool = False
    # The server's host key as one OpenSSH line, when the bridge learned it
    # (SSH), so it can be saved on first use.
    server_host_key: str = ""


class StreamReaderWriter:
    """A ByteStream over an asyncio TCP connection (tests use it in place of a
    tunnel; an agent-less deployment could too)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        try:
            return await self.reader.read(65536)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
