"""The measured paths, each a byte pipe to the same echo target, and the two
measurements taken on every one: bulk throughput and 1-byte round trips."""

import asyncio
import hashlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect

from bench.world import Site, World

MIB = 1024 * 1024
# The tunnel contract's largest binary frame; the TCP path writes the same
# chunks so that every path gets the same calls.
FRAME = 64 * 1024
WARM_UP_ROUND_TRIPS = 20
# Distinct random chunks cycled through when the echo is verified.
VERIFY_CHUNKS = 61
OPEN_TIMEOUT = 15


class Pipe(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes:
        """At least one byte; an error at the end of the stream."""
        ...

    async def close(self) -> None: ...


class TcpPipe:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> bytes:
        data = await self.reader.read(FRAME)
        if not data:
            raise ConnectionError("the echo target closed the connection")
        return data

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class WebSocketPipe:
    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket

    async def send(self, data: bytes) -> None:
        await self.websocket.send(data)

    async def recv(self) -> bytes:
        data = await self.websocket.recv()
        if not isinstance(data, bytes):
            raise ConnectionError(f"a text frame on a byte tunnel: {data!r:.80}")
        return data

    async def close(self) -> None:
        await self.websocket.close()


async def open_websocket(url: str, headers: dict[str, str] | None = None) -> WebSocketPipe:
    websocket = await connect(
        url,
        additional_headers=headers,
        subprotocols=["binary"],
        # Neither peer compresses in deployment; deflate would measure zlib.
        compression=None,
        max_size=4 * FRAME,
        open_timeout=OPEN_TIMEOUT,
    )
    return WebSocketPipe(websocket)


@dataclass(frozen=True)
class MeasuredPath:
    name: str
    open: Callable[[], Awaitable[Pipe]]


def measured_paths(world: World) -> list[MeasuredPath]:
    """The baseline first, the path under test last: the report's order."""

    async def tcp() -> Pipe:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", world.echo_port), OPEN_TIMEOUT
        )
        return TcpPipe(reader, writer)

    async def websockify() -> Pipe:
        return await open_websocket(f"ws://127.0.0.1:{world.websockify_port}")

    def passthrough(site: Site) -> Callable[[], Awaitable[Pipe]]:
        async def open_pipe() -> Pipe:
            return await open_websocket(site.client_url(), {"Authorization": f"Bearer {world.token}"})

        return open_pipe

    return [
        MeasuredPath("tcp", tcp),
        MeasuredPath("websockify", websockify),
        *(MeasuredPath(f"passthrough-{site.server}", passthrough(site)) for site in world.sites),
    ]


async def round_trips(pipe: Pipe, count: int) -> list[float]:
    """Seconds for each of count 1-byte echoes, one at a time."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await pipe.send(b"x")
        reply = await pipe.recv()
        times.append(time.perf_counter() - start)
        if reply != b"x":
            raise ValueError(f"echo returned {reply!r:.80} for b'x'")
    return times


async def throughput(pipe: Pipe, size: int, verify: bool = False) -> float:
    """MiB/s of size bytes sent while the same bytes come back at once; with
    verify, the bytes that came back must equal those sent, in order."""
    # Random bytes, so that no layer could gain by compressing them; with
    # verify each chunk differs, so a lost or repeated chunk shows.
    chunks = [os.urandom(FRAME) for _ in range(VERIFY_CHUNKS if verify else 1)]
    sent, returned = hashlib.sha256(), hashlib.sha256()

    async def send() -> None:
        for index, offset in enumerate(range(0, size, FRAME)):
            chunk = chunks[index % len(chunks)][: min(FRAME, size - offset)]
            if verify:
                sent.update(chunk)
            await pipe.send(chunk)

    async def receive() -> None:
        received = 0
        # Each recv gives at least one byte, so this ends.
        while received < size:
            data = await pipe.recv()
            received += len(data)
            if verify:
                returned.update(data)
        if received != size:
            raise ValueError(f"echo returned {received} bytes for {size}")

    start = time.perf_counter()
    await asyncio.gather(send(), receive())
    elapsed = time.perf_counter() - start
    if verify and sent.digest() != returned.digest():
        raise ValueError(f"the {size} bytes that came back differ from those sent")
    return size / MIB / elapsed


@dataclass(frozen=True)
class Sample:
    path: str
    round: int
    throughput_mib_s: float
    echo_p50_ms: float
    echo_p99_ms: float


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(path: MeasuredPath, round_number: int, size: int, echo_count: int) -> Sample:
    """One connection: warm up, time the echoes, then the bulk transfer.

    Every step has a deadline, so a stalled path fails the run instead of
    hanging it.
    """
    pipe = await asyncio.wait_for(path.open(), OPEN_TIMEOUT)
    try:
        # The first echoes also wait for the agent's tunnel to join.
        await asyncio.wait_for(round_trips(pipe, WARM_UP_ROUND_TRIPS), OPEN_TIMEOUT)
        echoes = await asyncio.wait_for(round_trips(pipe, echo_count), 30 + echo_count * 0.05)
        # Allow at least 1 MiB/s before calling the path stalled.
        mib_s = await asyncio.wait_for(throughput(pipe, size), 30 + size / MIB)
    finally:
        await asyncio.wait_for(pipe.close(), OPEN_TIMEOUT)
    return Sample(
        path=path.name,
        round=round_number,
        throughput_mib_s=mib_s,
        echo_p50_ms=statistics.median(echoes) * 1000,
        echo_p99_ms=percentile(echoes, 0.99) * 1000,
    )


async def run_rounds(world: World, rounds: int, size: int, echo_count: int) -> list[Sample]:
    """Every path once per round; the order rotates each round, so that no
    path always runs first (cold) or right after the heaviest one."""
    paths = measured_paths(world)
    samples = []
    for number in range(rounds):
        shift = number % len(paths)
        for path in paths[shift:] + paths[:shift]:
            samples.append(await measure(path, number, size, echo_count))
    return samples
