"""stdin and stdout as the local side of one tunnel (``server --stdio``), for
``ssh -o ProxyCommand=…``.

Pipes, sockets and terminals go through asyncio's pipe transports, so both
directions keep their back-pressure. Regular files (``< upload.bin``) cannot:
they never block, so they are read and written in a worker thread instead.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent.tunnel import CHUNK_SIZE, Reader, Writer


class _FileReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def read(self, n: int) -> bytes:
        return await asyncio.to_thread(os.read, self.fd, n)


class _FileWriter:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        data, self._pending = bytes(self._pending), bytearray()
        await asyncio.to_thread(_write_all, self.fd, data)

    def close(self) -> None:
        if self._pending:
            _write_all(self.fd, bytes(self._pending))
            self._pending.clear()

    async def wait_closed(self) -> None:
        return None


class _PipeProtocol(asyncio.streams.FlowControlMixin):
    """What :class:`asyncio.StreamWriter` needs of a write-only pipe: flow
    control, and a waiter for ``wait_closed()``."""

    def __init__(self) -> None:
        super().__init__()
        self._closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        return self._closed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _is_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


@asynccontextmanager
async def stdio(stdin: int = 0, stdout: int = 1) -> AsyncIterator[tuple[Reader, Writer]]:
    """A reader of ``stdin`` and a writer to ``stdout``; on the way out both
    descriptors are left blocking again (a shell sharing a terminal expects it)."""
    loop = asyncio.get_running_loop()
    blocking = {fd: os.get_blocking(fd) for fd in (stdin, stdout)}
    try:
        reader: Reader
        writer: Writer
        if _is_file(stdin):
            reader = _FileReader(stdin)
        else:
            stream = asyncio.StreamReader(limit=2 * CHUNK_SIZE)
            # A duplicate: closing the transport must not close fd 0 under Python's own sys.stdin.
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(os.dup(stdin), "rb", buffering=0)
            )
            reader = stream
        if _is_file(stdout):
            writer = _FileWriter(stdout)
        else:
            transport, protocol = await loop.connect_write_pipe(
                _PipeProtocol, os.fdopen(os.dup(stdout), "wb", buffering=0)
            )
            writer = asyncio.StreamWriter(transport, protocol, None, loop)
        yield reader, writer
    finally:
        for fd, was in blocking.items():
            try:
                os.set_blocking(fd, was)
            except OSError:
                pass
