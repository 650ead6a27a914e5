"""An asyncio transport over a bridge's ByteStream, for protocol libraries
(asyncssh, telnetlib3) that expect a socket's transport: writes go out in
order from one task, reads come from another and feed `data_received`."""

import asyncio
import collections

from sessions.bridges.base import ByteStream

CHUNK = 65536  # the tunnel's largest frame
# The protocol is asked to pause its writes above this many bytes not yet
# taken by the stream, and to resume below the low mark.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
CLOSE_TIMEOUT = 5.0


class StreamTransport(asyncio.Transport):
    """An asyncio transport over a ByteStream: writes go out in order from
    one task, reads come from another and feed `data_received`."""

    def __init__(self, stream: ByteStream, protocol: asyncio.Protocol) -> None:
        super().__init__(extra={"peername": ("device", 0), "sockname": ("gateway", 0)})
        self._stream = stream
        self._protocol = protocol
        self._pending: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._wrote = asyncio.Event()
        self._below_low = asyncio.Event()
        self._below_low.set()
        self._readable = asyncio.Event()
        self._readable.set()
        self._writing_paused = False
        self._closing = False
        self._lost = False
        self._tasks: list[asyncio.Task[None]] = []
        self.head = b""  # the first bytes from the target, for error messages
        self.answered = asyncio.Event()  # the target has said something
        self.ended = False  # the stream ended or failed, not closed by us

    def start(self) -> None:
        self._protocol.connection_made(self)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    # Writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._pending.append(bytes(data))
        self._buffered += len(data)
        self._wrote.set()
        if self._buffered > WRITE_LOW:
            self._below_low.clear()
        if not self._writing_paused and self._buffered > WRITE_HIGH:
            self._writing_paused = True
            self._protocol.pause_writing()

    async def drained(self) -> None:
        """Wait until what was written is mostly taken by the stream."""
        await self._below_low.wait()

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return WRITE_LOW, WRITE_HIGH

    def can_write_eof(self) -> bool:
        return False

    async def _write(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        break
                    self._wrote.clear()
                    await self._wrote.wait()
                    continue
                chunk = self._take()
                await self._stream.write(chunk)
                self._buffered -= len(chunk)
                if self._buffered <= WRITE_LOW:
                    self._below_low.set()
                    if self._writing_paused:
                        self._writing_paused = False
                        self._protocol.resume_writing()
        except Exception as exc:  # the stream failed
            self.ended = not self._closing
            self._closing = True
            self._lose(exc)
        finally:
            self._pending.clear()
            self._below_low.set()

    def _take(self) -> bytes:
        chunk = self._pending.popleft()
        while self._pending and len(chunk) + len(self._pending[0]) <= CHUNK:
            chunk += self._pending.popleft()
        return chunk

    # Reading

    async def _read(self) -> None:
        error: Exception | None = None
        try:
            while True:
                await self._readable.wait()
                data = await self._stream.read()
                if not data or self._closing:
                    break
                if len(self.head) < 256:
                    self.head += data[: 256 - len(self.head)]
                self.answered.set()
                self._protocol.data_received(data)
        except Exception as exc:
            error = exc
        self.ended = not self._closing
        self._lose(error)

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def is_reading(self) -> bool:
        return self._readable.is_set()

    # Closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send what is queued, then close the stream (see finish)."""
        self._closing = True
        self._wrote.set()

    def abort(self) -> None:
        # asyncssh aborts right after queueing its DISCONNECT message; let that
        # go out too: finish() bounds the wait.
        self.close()

    async def finish(self) -> None:
        self.close()
        reader, writer = self._tasks or (None, None)
        if writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(writer), CLOSE_TIMEOUT)
            except TimeoutError:
                pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._stream.close()
        finally:
            self._lose(None)

    def _lose(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._protocol.connection_lost(exc)
