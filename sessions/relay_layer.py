"""The relay between two sides of a session in different processes: chunks
and acknowledgements over the channel layer (plain asyncio, no Django)."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sessions.relay import RELAY_FAILED, WINDOW, Closed, PeerGone, Side

log = logging.getLogger(__name__)


class ChannelLayer(Protocol):
    async def send(self, channel: str, message: dict[str, Any]) -> None: ...

    async def receive(self, channel: str) -> dict[str, Any]: ...

    async def new_channel(self) -> str: ...


class LayerOutlet:
    """To a peer in another process, through the channel layer.

    Channel layers may reorder messages (channels-redis orders by timestamp)
    and drop them when full, so every chunk carries a sequence number and the
    sender keeps at most WINDOW chunks unacknowledged.
    """

    def __init__(self, layer: ChannelLayer, peer_channel: str) -> None:
        self.layer = layer
        self.peer_channel = peer_channel
        self.sequence = 0
        self.credits = asyncio.Semaphore(WINDOW)
        self.gone = False

    async def put(self, data: bytes) -> None:
        await self.credits.acquire()
        if self.gone:
            raise PeerGone()
        await self.layer.send(self.peer_channel, {"type": "relay.data", "seq": self.sequence, "bytes": data})
        self.sequence += 1

    async def close(self, closed: Closed) -> None:
        message = {"type": "relay.close", "seq": self.sequence, "reason": closed.reason, "code": closed.code}
        with contextlib.suppress(Exception):
            await self.layer.send(self.peer_channel, message)

    def acknowledged(self, count: int) -> None:
        for _ in range(count):
            self.credits.release()

    def peer_gone(self) -> None:
        self.gone = True
        # Wake every sender waiting for credit so it sees `gone`.
        for _ in range(WINDOW + 1):
            self.credits.release()


class LayerPort:
    """A side's own channel on the channel layer: chunks and acknowledgements
    from a peer in another process, and events for the session (passed to
    `on_event`)."""

    def __init__(
        self,
        layer: ChannelLayer,
        channel: str,
        side: Side,
        on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.layer = layer
        self.channel = channel
        self.side = side
        self.on_event = on_event
        self.outlet: LayerOutlet | None = None
        self.peer_channel = ""
        self._expected = 0
        self._early: dict[int, bytes] = {}
        self._close: dict[str, Any] | None = None
        self.task = asyncio.create_task(self._read())

    def connect(self, peer_channel: str) -> LayerOutlet:
        """Relay to the peer at `peer_channel` from now on."""
        self.peer_channel = peer_channel
        self.outlet = LayerOutlet(self.layer, peer_channel)
        self.side.remote = self
        return self.outlet

    async def acknowledge(self, count: int) -> None:
        if self.peer_channel:
            await self.layer.send(self.peer_channel, {"type": "relay.ack", "count": count})

    async def _read(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            kind = message.get("type")
            if kind == "relay.data":
                try:
                    await self._data(message["seq"], message["bytes"])
                except PeerGone:
                    continue
            elif kind == "relay.ack":
                if self.outlet is not None:
                    self.outlet.acknowledged(int(message["count"]))
            elif kind == "relay.close":
                self._close = message
                await self._maybe_close()
            elif self.on_event is not None:
                await self.on_event(message)

    async def _data(self, sequence: int, data: bytes) -> None:
        if sequence < self._expected:
            return
        self._early[sequence] = data
        if len(self._early) > WINDOW:
            # More than the window out of order means a message was lost:
            # end the session rather than deliver a stream with a hole.
            log.error("relay lost a chunk on %s: expected %d", self.channel, self._expected)
            await self.side.inbox.close(Closed("the relay lost data between workers", RELAY_FAILED))
            return
        while self._expected in self._early:
            await self.side.inbox.put(self._early.pop(self._expected))
            self._expected += 1
        await self._maybe_close()

    async def _maybe_close(self) -> None:
        if self._close is not None and self._expected >= int(self._close["seq"]):
            if self.outlet is not None:
                self.outlet.peer_gone()
            await self.side.inbox.close(Closed(self._close["reason"], int(self._close["code"]), from_peer=True))

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
