"""The Telnet bridge against a real inetutils telnetd (tests/telnetd.py), with
a plain TCP connection standing in for the device's tunnel. Each test logs in
through /bin/login as a person at xterm.js would: by typing."""

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from sessions.bridges.base import BridgeResult, Input, Resize, StreamReaderWriter
from sessions.bridges.telnet import BROWSER_CLOSED, SERVER_CLOSED, TIMED_OUT, TelnetOptions, run_telnet
from tests.telnetd import TelnetServer, telnetd

WAIT = 10  # seconds for any one thing to show up


@pytest.fixture(scope="module")
def server() -> Iterator[TelnetServer]:
    with telnetd() as running:
        yield running


class Terminal:
    """The browser's side of one bridge: what it shows, what it types."""

    def __init__(self, slow: bool = False) -> None:
        self.slow = slow
        self.events: asyncio.Queue = asyncio.Queue()
        self.screen = bytearray()
        self.seen = 0  # what earlier waits matched is not matched again
        self.statuses: list[tuple[str, str]] = []
        self._grew = asyncio.Event()
        self.task: asyncio.Task[BridgeResult] | None = None

    async def output(self, data: bytes) -> None:
        if self.slow:
            await asyncio.sleep(0.005)  # a browser that reads slowly
        self.screen += data
        self._grew.set()

    async def status(self, state: str, message: str) -> None:
        self.statuses.append((state, message))

    async def type(self, data: bytes) -> None:
        await self.events.put(Input(data))

    async def wait_for(self, pattern: bytes, timeout: float = WAIT) -> bytes:
        """The first match of the regex `pattern` in new output."""
        regex = re.compile(pattern)

        async def match() -> re.Match[bytes]:
            while not (found := regex.search(self.screen, self.seen)):
                self._grew.clear()
                await self._grew.wait()
            return found

        try:
            found = await asyncio.wait_for(match(), timeout)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} not shown within {timeout} s; the screen ends with "
                                 f"{bytes(self.screen[-300:])!r}") from None
        self.seen = found.end()
        return found.group(0)

    async def log_in(self, server: TelnetServer) -> None:
        await self.wait_for(rb"login: ")
        await self.type(server.user.encode() + b"\r")
        await self.wait_for(rb"Password: ")
        await self.type(server.password.encode() + b"\r")
        await self.wait_for(rb"\$ ")

    async def result(self, timeout: float = WAIT) -> BridgeResult:
        assert self.task is not None
        return await asyncio.wait_for(self.task, timeout)


@asynccontextmanager
async def terminal(host: str, port: int, slow: bool = False, **options: Any) -> AsyncIterator[Terminal]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
    # Keep TCP urgent data in the stream, as telnet clients (and the agent,
    # for a tunnel) must: telnetd sends the IAC of its Synch (IAC DM, after
    # an interrupt) as urgent data, which is otherwise lost, leaving a bare DM.
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    stream = StreamReaderWriter(reader, writer)
    term = Terminal(slow)
    term.task = asyncio.create_task(
        run_telnet(stream, TelnetOptions(**options), term.events, term.output, term.status)
    )
    try:
        yield term
    finally:
        if not term.task.done():
            await term.events.put(None)
        await asyncio.wait_for(asyncio.gather(term.task, return_exceptions=True), WAIT)
        await stream.close()


@pytest.mark.asyncio
async def test_it_logs_in_and_runs_a_command(server: TelnetServer) -> None:
    async with terminal(server.host, server.port) as term:
        await term.log_in(server)
        await term.type(b"echo $((6*7))\r")
        assert await term.wait_for(rb"\b42\r\n") == b"42\r\n"
        assert term.statuses == [("connected", "")]
        # telnetd's CR NUL (RFC 854's bare CR) reaches the browser as CR.
        assert b"\0" not in term.screen


@pytest.mark.asyncio
async def test_it_tells_the_server_the_window_size_and_every_new_one(server: TelnetServer) -> None:
    async with terminal(server.host, server.port, cols=91, rows=33) as term:
        await term.log_in(server)
        await term.type(b"stty size\r")
        await term.wait_for(rb"\b33 91\r\n")
        await term.events.put(Resize(cols=120, rows=40))
        await term.type(b"stty size\r")
        await term.wait_for(rb"\b40 120\r\n")


@pytest.mark.asyncio
async def test_it_carries_utf8_both_ways_intact(server: TelnetServer) -> None:
    text = "ü€😀".encode()
    async with terminal(server.host, server.port) as term:
        await term.log_in(server)
        await term.type(b"printf '" + text + b"\\n'\r")
        # Not the echo of the typed line (which has a quote before the text).
        await term.wait_for(rb"[\r\n]" + text + rb"\r\n")


@pytest.mark.asyncio
async def test_it_passes_the_iac_byte_from_the_server_as_data(server: TelnetServer) -> None:
    async with terminal(server.host, server.port) as term:
        await term.log_in(server)
        await term.type(b"printf '\\377\\377x\\n'\r")
        await term.wait_for(rb"[\r\n]\xff\xffx\r\n")


@pytest.mark.asyncio
async def test_it_sends_an_iac_byte_typed_in_the_browser_as_one_byte(server: TelnetServer) -> None:
    async with terminal(server.host, server.port) as term:
        await term.log_in(server)
        await term.type(b"echo R$((1+2)); head -n1 | od -An -tx1\r")
        await term.wait_for(rb"R3\r\n")
        await term.type(b"\xff\r")
        # One 0xff and the newline: not two 0xff (IAC doubled, not undone)
        # nor none (IAC taken as a command).
        await term.wait_for(rb"\s+ff 0a\r\n")


@pytest.mark.asyncio
async def test_a_long_output_to_a_slow_browser_arrives_whole_and_in_order(server: TelnetServer) -> None:
    async with terminal(server.host, server.port, slow=True) as term:
        await term.log_in(server)
        await term.type(b"seq 200000\r")
        await term.wait_for(rb"\n200000\r\n")
        first = re.search(rb"[\r\n]1\r\n2\r\n", term.screen)
        assert first is not None
        lines = bytes(term.screen[first.start() + 1 : term.seen]).split(b"\r\n")[:-1]
        assert lines == [str(n).encode() for n in range(1, 200001)]


@pytest.mark.asyncio
async def test_ctrl_c_interrupts_the_running_command(server: TelnetServer) -> None:
    async with terminal(server.host, server.port) as term:
        await term.log_in(server)
        # The marker comes from the process that becomes `sleep`, so it is in
        # the foreground by then, and the interrupt cannot reach bash instead.
        await term.type(b"sh -c 'echo S$((2+3)); exec sleep 100'\r")
        await term.wait_for(rb"S5\r\n")
        await term.type(b"\x03")
        await term.type(b"echo $((6*8))\r")
        await term.wait_for(rb"\b48\r\n", timeout=5)
        # telnetd's Synch after the interrupt (IAC DM) is a command, not data.
        assert b"\xf2" not in term.screen


@pytest.mark.asyncio
async def test_exiting_the_shell_ends_the_session_as_closed_by_the_server(server: TelnetServer) -> None:
    async with terminal(server.host, server.port) as term:
        await term.log_in(server)
        await term.type(b"exit\r")
        assert await term.result() == BridgeResult(SERVER_CLOSED)


@pytest.mark.asyncio
async def test_the_page_going_away_ends_the_session_as_closed_in_the_browser(server: TelnetServer) -> None:
    async with terminal(server.host, server.port) as term:
        await term.wait_for(rb"login: ")
        await term.events.put(None)
        assert await term.result() == BridgeResult(BROWSER_CLOSED)


@pytest.mark.asyncio
async def test_a_target_that_never_answers_fails_after_the_connect_timeout() -> None:
    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the bridge's side closes
        writer.close()

    silent = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        async with terminal("127.0.0.1", port, connect_timeout=0.3) as term:
            result = await term.result()
            assert result == BridgeResult(TIMED_OUT, failed=True)
            assert term.statuses == []
    finally:
        silent.close()
        await silent.wait_closed()
