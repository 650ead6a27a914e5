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

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus, WebSocketException

from agent.client import api
from agent.client.link import ClientError, Link, Refused, Target
from agent.tunnel import CLOSE_TIMEOUT, GOING_AWAY, Forwarded, Reader, Writer, close_both, forward

logger = logging.getLogger(__name__)


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


class ClientWording:
    """The local proxy's: the local side is a technician's client."""

    local_closed = "the local client closed the connection"
    shutting_down = "the client is shutting down"

    def text_frame(self, message: str) -> str:
        return f"the server ended the tunnel with a text frame {message[:40]!r}"

    def tunnel_closed(self, code: int | None, reason: str) -> str:
        if code is None:
            return "the tunnel was lost"
        if code == 1000:
            return "the remote side closed the connection"
        return f"the server ended the tunnel: {reason or 'no reason given'} (code {code})"

    def local_error(self, exc: OSError) -> str:
        if isinstance(exc, ConnectionError):
            return "the local client dropped the connection"
        return f"the local connection failed: {exc.strerror or exc}"

    def unexpected(self, exc: BaseException) -> str:
        return f"relaying failed: {exc!r}"


async def relay(ws: ClientConnection, reader: Reader, writer: Writer) -> Forwarded:
    """Relay until either side ends, then close both; say how it ended."""
    return await forward(ws, reader, writer, ClientWording())


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
            _size(relayed.from_local), _size(relayed.to_local))
