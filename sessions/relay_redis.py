"""The bytes of sessions whose two sides live in different worker processes,
through Redis lists (plain asyncio and redis-py, no Django).

channels-redis carries each message through a Lua script, a sorted set and
msgpack, about 30 MiB/s for 64 KiB chunks. Here each process pops one list
of its own, named after the process part of its channel names (the part
before "!", which the channel layer spec reserves for routing to a
process); a peer's chunk is one RPUSH onto it, and the reader takes
everything that has arrived in one round trip. A Redis list keeps the
order of one sender's pushes, so with the credits of relay_layer nothing
needs reordering; sequence numbers still let the receiver notice a loss
(Redis restarted, a key expired) and end the session instead of delivering
a stream with a hole.
"""

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable

from redis import asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY_PREFIX = "remote-access:relay:"
# A list whose reader has died is gone this long after its last push.
KEY_TTL = 300
BATCH = 256
SEQUENCE_BYTES = 8

DATA = b"D"
ACK = b"A"
CLOSE = b"C"

Handler = Callable[[bytes, int, bytes], Awaitable[None]]


def process_key(channel: str) -> str:
    """The list a channel's process reads."""
    return KEY_PREFIX + channel.split("!", 1)[0]


def encode(channel: str, kind: bytes, sequence: int, payload: bytes) -> bytes:
    return b"".join((channel.encode(), b"\0", kind, sequence.to_bytes(SEQUENCE_BYTES, "big"), payload))


def decode(message: bytes) -> tuple[str, bytes, int, bytes]:
    """(channel, kind, sequence, payload)."""
    channel, _, rest = message.partition(b"\0")
    start = 1 + SEQUENCE_BYTES
    return channel.decode(), rest[:1], int.from_bytes(rest[1:start], "big"), rest[start:]


def close_payload(reason: str, code: int) -> bytes:
    return json.dumps({"reason": reason, "code": code}).encode()


class RedisRelay:
    """This process's end of the Redis relay: pushes to peers' lists and one
    reader of its own list that hands each message to the port it names."""

    def __init__(self, url: str) -> None:
        # Pushes share a pool; the blocking pop needs a connection of its own.
        self.redis = aioredis.from_url(url, socket_timeout=None)
        self.reader_redis = aioredis.from_url(url, socket_timeout=None)
        self.ports: dict[str, Handler] = {}
        self.key = ""
        self._pending: dict[str, list[bytes]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        # Told when the reader loses Redis: every port's session ends.
        self.on_lost: dict[str, Callable[[str], Awaitable[None]]] = {}

    def register(self, channel: str, handler: Handler, on_lost: Callable[[str], Awaitable[None]]) -> None:
        key = process_key(channel)
        if self.key and key != self.key:
            raise ValueError(f"channel {channel} belongs to another process than {self.key}")
        self.key = key
        self.ports[channel] = handler
        self.on_lost[channel] = on_lost
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read())

    def unregister(self, channel: str) -> None:
        self.ports.pop(channel, None)
        self.on_lost.pop(channel, None)

    async def push(self, channel: str, kind: bytes, sequence: int, payload: bytes = b"") -> None:
        """Queue a message for a peer's process; queued messages leave in
        one RPUSH per round trip, in order. Credits bound what a session may
        queue, so this never waits."""
        key = process_key(channel)
        self._pending.setdefault(key, []).append(encode(channel, kind, sequence, payload))
        if key not in self._flushers:
            self._flushers[key] = asyncio.create_task(self._flush(key))

    async def _flush(self, key: str) -> None:
        try:
            while batch := self._pending.pop(key, None):
                async with self.redis.pipeline(transaction=False) as pipe:
                    await pipe.rpush(key, *batch).expire(key, KEY_TTL).execute()
        except (RedisError, OSError) as exc:
            self._pending.pop(key, None)
            await self._lose(f"the relay lost its connection to Redis: {exc}")
        finally:
            self._flushers.pop(key, None)

    async def _lose(self, reason: str) -> None:
        log.error("%s", reason)
        for on_lost in list(self.on_lost.values()):
            with contextlib.suppress(Exception):
                await on_lost("the relay lost its connection to Redis")

    async def _read(self) -> None:
        try:
            while self.ports:
                popped = await self.reader_redis.blpop([self.key], timeout=1)
                if popped is None:
                    continue
                messages = [popped[1]]
                messages += await self.reader_redis.lpop(self.key, BATCH) or []
                for message in messages:
                    channel, kind, sequence, payload = decode(message)
                    handler = self.ports.get(channel)
                    if handler is not None:
                        await handler(kind, sequence, payload)
        except (RedisError, OSError) as exc:
            await self._lose(f"the relay lost its connection to Redis: {exc}")


_relays: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisRelay]" = weakref.WeakKeyDictionary()


def shared(url: str) -> RedisRelay:
    """The relay of the running event loop (connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop)
    if relay is None:
        relay = _relays[loop] = RedisRelay(url)
    return relay

