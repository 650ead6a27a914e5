"""The byte relay between the two sides of one session.

Plain asyncio, no Django. A side knows its own WebSocket only as an ASGI
`receive` and `send` and its peer only through an outlet: a `LocalOutlet`
when both sides live in this process (the bytes never leave it), a
`LayerOutlet` (relay_layer.py) through the channel layer when they do not. Either way a
sender waits while its peer is `WINDOW` chunks behind, so a slow reader slows
the writer instead of growing a buffer, and bytes arrive whole and in order.
"""

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

CHUNK = 64 * 1024
# Chunks in flight between the two sides: at most 1 MiB per direction.
WINDOW = 16
# What a client may send before its device has joined; then it is not read
# until the device joins.
PENDING_LIMIT = 1024 * 1024

# WebSocket close codes; applications may only use 1000 and 3000-4999.
DEVICE_OFFLINE = 4001
DEVICE_DID_NOT_CONNECT = 4002
DEVICE_REPORTED_FAILURE = 4003
TEXT_FRAME = 4010
RELAY_FAILED = 4011
# Acknowledge delivered chunks in batches to save layer round trips.
ACK_EVERY = 4

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Closed:
    """Why a side ended, and the WebSocket close code its peer should use."""

    reason: str
    code: int = 1000
    from_peer: bool = False


class PeerGone(Exception):
    """The peer ended while we were waiting to send to it."""


class Inbox:
    """Bytes from the peer, in order, then one Closed. Bounded: `put` waits."""

    def __init__(self, limit: int = WINDOW) -> None:
        self._items: deque[bytes] = deque()
        self._limit = limit
        self._closed: Closed | None = None
        self._shut = False
        self._changed = asyncio.Condition()

    async def put(self, data: bytes) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._items) < self._limit or self._shut or self._closed)
            if self._shut or self._closed:
                raise PeerGone()
            self._items.append(data)
            self._changed.notify_all()

    async def close(self, closed: Closed) -> None:
        """Deliver `closed` after what is queued; never waits for room."""
        async with self._changed:
            if self._closed is None:
                self._closed = closed
            self._changed.notify_all()

    async def shut(self) -> None:
        """The owner has ended: senders stop waiting and learn the peer is gone."""
        async with self._changed:
            self._shut = True
            self._changed.notify_all()

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> bytes | Closed:
        async with self._changed:
            await self._changed.wait_for(lambda: self._items or self._closed)
            if self._items:
                data = self._items.popleft()
                self._changed.notify_all()
                return data
            assert self._closed is not None
            return self._closed


class Acknowledger(Protocol):
    async def acknowledge(self, count: int) -> None: ...


class Outlet(Protocol):
    async def put(self, data: bytes) -> None: ...

    async def close(self, closed: Closed) -> None: ...


class LocalOutlet:
    """Straight into the peer's inbox, in this process."""

    def __init__(self, peer: "Side") -> None:
        self.peer = peer

    async def put(self, data: bytes) -> None:
        await self.peer.inbox.put(data)

    async def close(self, closed: Closed) -> None:
        await self.peer.inbox.close(replace(closed, from_peer=True))


async def put_chunks(outlet: Outlet, data: bytes) -> None:
    """Frames on the tunnel carry at most CHUNK bytes."""
    for start in range(0, len(data), CHUNK):
        await outlet.put(data[start : start + CHUNK])


class Side:
    """One WebSocket of a session: pumps its frames to the peer and the peer's
    bytes to it, until either ends."""

    def __init__(
        self,
        name: str,
        receive: Receive,
        send: Send,
        *,
        text_ends: bool,
        on_peer_closed: Callable[[Closed], Awaitable[Closed]] | None = None,
    ) -> None:
        self.name = name
        self.receive = receive
        self.send = send
        # A text frame from a device (e.g. "## Shutdown ##") ends the session;
        # it is never forwarded.
        self.text_ends = text_ends
        # May give a better reason than the peer's for closing this side.
        self.on_peer_closed = on_peer_closed
        self.inbox = Inbox()
        self.outlet: Outlet | None = None
        self.joined = asyncio.Event()
        self.bytes_in = 0
        # Set when the peer is in another process: it is told what was delivered.
        self.remote: Acknowledger | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._disconnected = False
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, outlet: Outlet) -> None:
        """Connect to the peer; what arrived before is sent first, in order."""
        task = asyncio.create_task(self._attach(outlet))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach(self, outlet: Outlet) -> None:
        async with self._lock:
            try:
                for data in self._pending:
                    await put_chunks(outlet, data)
            except PeerGone:
                return
            self._pending.clear()
            self._pending_size = 0
            self.outlet = outlet
            self.joined.set()

    async def _forward(self, data: bytes) -> None:
        while True:
            async with self._lock:
                if self.outlet is not None:
                    await put_chunks(self.outlet, data)
                    return
                if self._pending_size + len(data) <= PENDING_LIMIT or not self._pending:
                    self._pending.append(data)
                    self._pending_size += len(data)
                    return
            # Stop reading the client until its device joins.
            await self.joined.wait()

    async def _pump_in(self) -> Closed:
        """Own WebSocket → peer."""
        while True:
            message = await self.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self._disconnected = True
                return Closed(f"the {self.name} closed the connection")
            if kind != "websocket.receive":
                continue
            data = message.get("bytes")
            if data is None:
                if self.text_ends:
                    return Closed(f"the {self.name} ended the session")
                return Closed(f"the {self.name} sent a text frame; only binary frames are relayed", TEXT_FRAME)
            self.bytes_in += len(data)
            try:
                await self._forward(data)
            except PeerGone:
                return Closed("the peer has gone")

    async def _pump_out(self) -> Closed:
        """Peer → own WebSocket."""
        delivered = 0
        while True:
            item = await self.inbox.get()
            if isinstance(item, Closed):
                if item.from_peer and self.on_peer_closed is not None:
                    return await self.on_peer_closed(item)
                return item
            await self.send({"type": "websocket.send", "bytes": item})
            if self.remote is not None:
                delivered += 1
                if delivered >= ACK_EVERY or self.inbox.empty():
                    await self.remote.acknowledge(delivered)
                    delivered = 0

    async def run(self) -> Closed:
        """Relay until either side ends; close our WebSocket and tell the peer."""
        pump_in = asyncio.create_task(self._pump_in())
        pump_out = asyncio.create_task(self._pump_out())
        done, _ = await asyncio.wait({pump_in, pump_out}, return_when=asyncio.FIRST_COMPLETED)
        for task in (pump_in, pump_out, *self._tasks):
            task.cancel()
        await asyncio.gather(pump_in, pump_out, *self._tasks, return_exceptions=True)
        finished = done.pop()
        closed = finished.result() if not finished.cancelled() and finished.exception() is None else Closed(
            "the relay failed", RELAY_FAILED
        )
        await self.inbox.shut()
        if not closed.from_peer and self.outlet is not None:
            await self.outlet.close(closed)
        if not self._disconnected:
            await self.close_websocket(closed)
        return closed

    async def end(self, closed: Closed) -> None:
        """End the session from outside the relay (a failure, a timeout)."""
        await self.inbox.close(closed)

    async def close_websocket(self, closed: Closed) -> None:
        with contextlib.suppress(Exception):
            await self.send({"type": "websocket.close", "code": closed.code, "reason": closed.reason[:120]})


def pair_locally(client: Side, device: Side) -> None:
    client.attach(LocalOutlet(device))
    device.attach(LocalOutlet(client))


# Client sides in this process waiting for their device tunnel, by operation id.
waiting: dict[int, Side] = {}
