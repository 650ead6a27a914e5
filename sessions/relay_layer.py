"""The relay between two sides of a session in different processes (plain
asyncio, no Django).

Session events (the device's tunnel joining, a reported failure) go through
the channel layer. The bytes go through a link: the channel layer itself, or
with Redis the much faster lists of relay_redis. Either way every chunk
carries a sequence number and the sender keeps at most WINDOW chunks
unacknowledged: channel layers may reorder and drop messages when full, and
a lost chunk must end the session rather than leave a hole in the stream.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sessions import relay_redis
from sessions.relay import RELAY_FAILED, WINDOW, Closed, PeerGone, Side

log = logging.getLogger(__name__)


class ChannelLayer(Protocol):
    async def send(self, channel: str, message: dict[str, Any]) -> None: ...

    async def receive(self, channel: str) -> dict[str, Any]: ...

    async def new_channel(self) -> str: ...


class Link(Protocol):
    """How chunks, acknowledgements and the close reach a peer's channel."""

    # Whether the link keeps a sender's order: then any gap is a loss.
    ordered: bool

    async def data(self, peer: str, sequence: int, data: bytes) -> None: ...

    async def ack(self, peer: str, count: int) -> None: ...

    async def close(self, peer: str, sequence: int, reason: str, code: int) -> None: ...


class LayerLink:
    # The channel layer may reorder up to the window (channels-redis orders by timestamp).
    ordered = False

    def __init__(self, layer: ChannelLayer) -> None:
        self.layer = layer

    async def data(self, peer: str, sequence: int, data: bytes) -> None:
        await self.layer.send(peer, {"type": "relay.data", "seq": sequence, "bytes": data})

    async def ack(self, peer: str, count: int) -> None:
        await self.layer.send(peer, {"type": "relay.ack", "count": count})

    async def close(self, peer: str, sequence: int, reason: str, code: int) -> None:
        await self.layer.send(peer, {"type": "relay.close", "seq": sequence, "reason": reason, "code": code})


class RedisLink:
    # A Redis list keeps a sender's order.
    ordered = True

    def __init__(self, relay: relay_redis.RedisRelay) -> None:
        self.relay = relay

    async def data(self, peer: str, sequence: int, data: bytes) -> None:
        await self.relay.push(peer, relay_redis.DATA, sequence, data)

    async def ack(self, peer: str, count: int) -> None:
        await self.relay.push(peer, relay_redis.ACK, count)

    async def close(self, peer: str, sequence: int, reason: str, code: int) -> None:
        await self.relay.push(peer, relay_redis.CLOSE, sequence, relay_redis.close_payload(reason, code))


class Credits:
    """Chunks the sender may still put before the peer acknowledges some."""

    def __init__(self, count: int) -> None:
        self.available = count
        self.gone = False
        self._changed = asyncio.Condition()

    async def take(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.available > 0 or self.gone)
            if self.gone:
                raise PeerGone()
            self.available -= 1

    async def give(self, count: int) -> None:
        async with self._changed:
            self.available += count
            self._changed.notify_all()

    async def end(self) -> None:
        """The peer has gone: waiting senders learn it at once."""
        async with self._changed:
            self.gone = True
            self._changed.notify_all()


class LayerOutlet:
    """To a peer in another process, through a link."""

    def __init__(self, link: Link, peer_channel: str) -> None:
        self.link = link
        self.peer_channel = peer_channel
        self.sequence = 0
        self.credits = Credits(WINDOW)

    async def put(self, data: bytes) -> None:
        await self.credits.take()
        await self.link.data(self.peer_channel, self.sequence, data)
        self.sequence += 1

    async def close(self, closed: Closed) -> None:
        with contextlib.suppress(Exception):
            await self.link.close(self.peer_channel, self.sequence, closed.reason, closed.code)


class LayerPort:
    """A side's own channel: chunks and acknowledgements from a peer in
    another process through the link, and events for the session from the
    channel layer (passed to `on_event`)."""

    def __init__(
        self,
        layer: ChannelLayer,
        channel: str,
        side: Side,
        on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        redis: relay_redis.RedisRelay | None = None,
    ) -> None:
        self.layer = layer
        self.channel = channel
        self.side = side
        self.on_event = on_event
        self.redis = redis
        self.link: Link = RedisLink(redis) if redis is not None else LayerLink(layer)
        self.outlet: LayerOutlet | None = None
        self.peer_channel = ""
        self._expected = 0
        self._early: dict[int, bytes] = {}
        self._close: tuple[int, str, int] | None = None
        if redis is not None:
            redis.register(channel, self._from_redis, self._lost)
        self.task = asyncio.create_task(self._read())

    def connect(self, peer_channel: str) -> LayerOutlet:
        """Relay to the peer at `peer_channel` from now on."""
        self.peer_channel = peer_channel
        self.outlet = LayerOutlet(self.link, peer_channel)
        self.side.remote = self
        return self.outlet

    async def acknowledge(self, count: int) -> None:
        if self.peer_channel:
            await self.link.ack(self.peer_channel, count)

    async def _read(self) -> None:
        while True:
            message = await self.layer.receive(self.channel)
            kind = message.get("type")
            if kind == "relay.data":
                await self._data(int(message["seq"]), message["bytes"])
            elif kind == "relay.ack":
                await self._acknowledged(int(message["count"]))
            elif kind == "relay.close":
                await self._closed(int(message["seq"]), str(message["reason"]), int(message["code"]))
            elif self.on_event is not None:
                await self.on_event(message)

    async def _from_redis(self, kind: bytes, sequence: int, payload: bytes) -> None:
        if kind == relay_redis.DATA:
            await self._data(sequence, payload)
        elif kind == relay_redis.ACK:
            await self._acknowledged(sequence)
        elif kind == relay_redis.CLOSE:
            close = json.loads(payload)
            await self._closed(sequence, str(close["reason"]), int(close["code"]))

    async def _acknowledged(self, count: int) -> None:
        if self.outlet is not None:
            await self.outlet.credits.give(count)

    async def _lost(self, reason: str) -> None:
        await self.side.inbox.close(Closed(reason, RELAY_FAILED))

    async def _data(self, sequence: int, data: bytes) -> None:
        if sequence < self._expected:
            return
        self._early[sequence] = data
        if len(self._early) > WINDOW or (self.link.ordered and sequence != self._expected):
            # More than the window out of order means a message was lost.
            log.error("relay lost a chunk on %s: expected %d", self.channel, self._expected)
            await self.side.inbox.close(Closed("the relay lost data between workers", RELAY_FAILED))
            return
        try:
            while self._expected in self._early:
                await self.side.inbox.put(self._early.pop(self._expected))
                self._expected += 1
        except PeerGone:
            return
        await self._maybe_close()

    async def _closed(self, sequence: int, reason: str, code: int) -> None:
        self._close = (sequence, reason, code)
        await self._maybe_close()

    async def _maybe_close(self) -> None:
        if self._close is None:
            return
        sequence, reason, code = self._close
        if self._expected >= sequence:
            if self.outlet is not None:
                await self.outlet.credits.end()
            await self.side.inbox.close(Closed(reason, code, from_peer=True))

    async def stop(self) -> None:
        if self.redis is not None:
            self.redis.unregister(self.channel)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
