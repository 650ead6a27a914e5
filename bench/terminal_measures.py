"""What the terminal benchmark measures on each path: Connect to the first
byte of the prompt, `cat` of a large file, and keystroke echo."""

import asyncio
import statistics
import time
from dataclasses import dataclass

from bench.paths import MIB, OPEN_TIMEOUT, WARM_UP_ROUND_TRIPS, percentile, round_trips
from bench.terminal_paths import Terminal, TerminalPath
from bench.terminal_world import TerminalWorld

# Output read while waiting for a marker; a shell that says more is broken.
MARKER_LIMIT = 1024 * 1024
# Each marker is typed as arithmetic, so that the shell's echo of the
# command line never matches it.
READY = (b"echo READY-$((6*7))\r", b"READY-42")
# In raw mode, without echo, `cat` sends back each key as it comes, with no
# line buffer to fill and no wrapping: exactly the byte typed.
ECHO_MODE = (b"stty raw -echo; echo RAW-$((6*7)); exec cat\r", b"RAW-42\n")
BEGIN, END = b"BEGIN-42\r\n", b"END-42"


@dataclass(frozen=True)
class TerminalSample:
    path: str
    round: int
    throughput_mb_s: float
    echo_p50_ms: float
    echo_p99_ms: float
    # Every try of this round, Connect to the first byte of the prompt.
    connect_ms: tuple[float, ...]


async def read_until(terminal: Terminal, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        if len(seen) > MARKER_LIMIT:
            raise ValueError(f"no {marker!r} in {len(seen)} bytes of output, ending {seen[-200:]!r}")
        seen += await terminal.recv()
    return seen


async def command(terminal: Terminal, typed_and_marker: tuple[bytes, bytes]) -> bytes:
    typed, marker = typed_and_marker
    await terminal.send(typed)
    return await read_until(terminal, marker)


async def time_to_prompt(path: TerminalPath) -> float:
    """Seconds from the start of opening to the first output (the prompt)."""
    start = time.perf_counter()
    terminal = await path.open()
    try:
        await terminal.recv()
        return time.perf_counter() - start
    finally:
        await asyncio.wait_for(terminal.close(), OPEN_TIMEOUT)


async def cat_throughput(terminal: Terminal, world: TerminalWorld) -> float:
    """MB/s (10^6 bytes) of `cat` output on the terminal, every byte counted."""
    typed = f"echo BEGIN-$((6*7)); cat {world.output_file}; echo END-$((6*7))\r".encode()
    start = time.perf_counter()
    head = await command(terminal, (typed, BEGIN))
    chunk = head[head.index(BEGIN) + len(BEGIN):]
    counted, carry = 0, b""
    # END may straddle two reads: look for it in the last bytes of the
    # previous read and this one.
    while (found := (carry + chunk).find(END)) < 0:
        counted += len(chunk)
        carry = (carry + chunk)[-len(END):]
        chunk = await terminal.recv()
    counted += found - len(carry)
    elapsed = time.perf_counter() - start
    if counted != world.output_on_terminal:
        raise ValueError(f"cat gave {counted} bytes on the terminal, not {world.output_on_terminal}")
    return counted / 1e6 / elapsed


async def keystroke_echoes(terminal: Terminal, count: int) -> list[float]:
    """Seconds from each key sent to its echo, one key at a time."""
    await command(terminal, ECHO_MODE)
    await round_trips(terminal, WARM_UP_ROUND_TRIPS)
    return await round_trips(terminal, count)


async def measure(path: TerminalPath, world: TerminalWorld, round_number: int, echo_count: int,
                  connect_count: int) -> TerminalSample:
    """Fresh sessions for the Connect times, then one session for the output
    and the echoes. Every step has a deadline, so a stalled path fails the
    run instead of hanging it."""
    connects = [await asyncio.wait_for(time_to_prompt(path), OPEN_TIMEOUT * 2) for _ in range(connect_count)]
    terminal = await asyncio.wait_for(path.open(), OPEN_TIMEOUT)
    try:
        await asyncio.wait_for(command(terminal, READY), OPEN_TIMEOUT)
        # Allow at least 1 MiB/s before calling the path stalled.
        mb_s = await asyncio.wait_for(cat_throughput(terminal, world), 30 + world.output_size / MIB)
        echoes = await asyncio.wait_for(keystroke_echoes(terminal, echo_count), 30 + echo_count * 0.05)
    finally:
        await asyncio.wait_for(terminal.close(), OPEN_TIMEOUT)
    return TerminalSample(
        path=path.name,
        round=round_number,
        throughput_mb_s=mb_s,
        echo_p50_ms=statistics.median(echoes) * 1000,
        echo_p99_ms=percentile(echoes, 0.99) * 1000,
        connect_ms=tuple(seconds * 1000 for seconds in connects),
    )


async def run_rounds(paths: list[TerminalPath], world: TerminalWorld, rounds: int, echo_count: int,
                     connect_count: int) -> list[TerminalSample]:
    """Every path once per round; which goes first alternates round by round."""
    samples = []
    for number in range(rounds):
        for path in paths if number % 2 == 0 else paths[::-1]:
            samples.append(await measure(path, world, number, echo_count, connect_count))
    return samples
