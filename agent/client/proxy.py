"""Local connections carried to the device: one WebSocket tunnel for each.

Bytes go both ways in binary frames of at most 64 KiB. Neither direction
reads faster than the other side takes: ``ws.send`` waits while the socket's
buffer is full, and frames from the server wait for ``drain()`` toward the
local client (websockets stops reading the socket when its queue is full).
The protocol has no half-close, so either side ending ends the tunnel and
closes the other side.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from agent.client import api
from agent.client.link import ClientError, Link, Refused, Target
from agent.tunnel import CLOSE_TIMEOUT, close_both

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
GOING_AWAY = 1001


class Reader(Protocol):
    async def read(self, n: int) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


async def open_tunnel(link: Link, target: Target) -> ClientConnection:
    """A new tunnel WebSocket to ``target``; raise :class:`ClientError` with a clear message."""
    try:
        return await link.connect(target)
    except InvalidStatus as exc:
        status = exc.response.status_code
        logger.debug("tunnel to %s refused with HTTP %s", target, status)
        raise await asyncio.to_thread(api.refusal, link, target, status) from None
    except (OSError, TimeoutError) as exc:
        raise link.unreachable(exc) from None
    except WebSocketException as exc:
        raise ClientError(f"the server at {link.server} did not open a tunnel: {exc}") from None


@dataclass
class Relayed:
    sent: int = 0  # local client -> server
    received: int = 0  # server -> local client
    ended_by: str = ""
    failed: bool = False  # the server ended the tunnel with an error


async def _local_to_server(reader: Reader, ws: ClientConnection, relayed: Relayed) -> str:
    while data := await reader.read(CHUNK):
        await ws.send(data)
        relayed.sent += len(data)
    return "the local client closed the connection"


async def _server_to_local(ws: ClientConnection, writer: Writer, relayed: Relayed) -> str:
    async for message in ws:
        if isinstance(message, str):
            # The contract has binary frames only; a text frame is never data.
            relayed.failed = True
            return f"the server ended the tunnel with a text frame {message[:40]!r}"
        writer.write(message)
        await writer.drain()
        relayed.received += len(message)
    return _closed(ws, relayed)


def _closed(ws: ClientConnection, relayed: Relayed) -> str:
    code = ws.close_code
    if code is None:
        relayed.failed = True
        return "the tunnel was lost"
    if code == 1000:
        return "the remote side closed the connection"
    relayed.failed = True
    reason = ws.close_reason or "no reason given"
    return f"the server ended the tunnel: {reason} (code {code})"


def _describe(task: asyncio.Task[str], ws: ClientConnection, relayed: Relayed) -> str:
    exc = task.exception()
    if exc is None:
        return task.result()
    if isinstance(exc, ConnectionClosed):
        return _closed(ws, relayed)
    if isinstance(exc, ConnectionError):
        return "the local client dropped the connection"
    if isinstance(exc, OSError):
        return f"the local connection failed: {exc.strerror or exc}"
    relayed.failed = True
    return f"relaying failed: {exc!r}"


async def relay(ws: ClientConnection, reader: Reader, writer: Writer) -> Relayed:
    """Relay until either side ends, then close both; say how it ended."""
    relayed = Relayed()
    up = asyncio.create_task(_local_to_server(reader, ws, relayed))
    down = asyncio.create_task(_server_to_local(ws, writer, relayed))
    code = 1000
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        relayed.ended_by = _describe(done.pop(), ws, relayed)
    except asyncio.CancelledError:
        code = GOING_AWAY
        relayed.ended_by = "the client is shutting down"
        raise
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        await close_both(ws, writer, code)
    return relayed


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB"


class Proxy:
    """A local TCP listener; every accepted connection gets its own tunnel.

    A tunnel that cannot open closes only its own connection, unless the
    server refused the credentials or the endpoint: then every later one
    would fail too, so the proxy stops with that error (``failure``).
    """

    def __init__(self, link: Link, target: Target, *, first: ClientConnection | None = None) -> None:
        self.link = link
        self.target = target
        self.failure: ClientError | None = None
        self.connections = 0
        self._first = first  # a tunnel opened in advance, for the first connection
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()

    async def start(self, host: str, port: int) -> int:
        try:
            self._server = await asyncio.start_server(self._accept, host, port)
        except OSError as exc:
            raise ClientError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return int(self._server.sockets[0].getsockname()[1])

    def stop(self, failure: ClientError | None = None) -> None:
        if failure is not None and self.failure is None:
            self.failure = failure
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._accepting:
            # Not cancelled: Python 3.11's streams log an error for a cancelled
            # connection callback. They end as soon as their relay has.
            await asyncio.wait(self._accepting, timeout=CLOSE_TIMEOUT)
        if self._first is not None:
            await close_both(self._first, None, GOING_AWAY)
            self._first = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepting = asyncio.current_task()
        assert accepting is not None
        self._accepting.add(accepting)
        task = asyncio.create_task(self._connection(reader, writer))
        self._tasks.add(task)
        try:
            await asyncio.wait({task})
        finally:
            self._tasks.discard(task)
            self._accepting.discard(accepting)
        if not task.cancelled() and task.exception() is not None:
            logger.error("connection failed: %r", task.exception())

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        if self._first is not None:
            ws, self._first = self._first, None
        else:
            try:
                ws = await open_tunnel(self.link, self.target)
            except Refused as exc:
                # Every later connection would be refused too: stop, and let
                # the caller tell the person once.
                logger.debug("connection %d from %s: %s", number, where, exc)
                await close_both(None, writer)
                self.stop(exc)
                return
            except ClientError as exc:
                logger.error("connection %d from %s: %s", number, where, exc)
                await close_both(None, writer)
                return
            except asyncio.CancelledError:
                writer.close()
                raise
        logger.info("connection %d from %s: tunnel to %s open", number, where, self.target)
        try:
            relayed = await relay(ws, reader, writer)
        except asyncio.CancelledError:
            logger.info("connection %d closed: the proxy is stopping", number)
            raise
        log = logger.warning if relayed.failed else logger.info
        log("connection %d ended: %s (sent %s, received %s)", number, relayed.ended_by,
            _size(relayed.sent), _size(relayed.received))
