"""Generated Telnet server streams against the Telnet bridge: option
commands with any option byte, subnegotiations with garbage, unterminated
ones, IAC doubled or cut off at the end of a chunk, all split at arbitrary
chunk boundaries, then a known text; a key press once the text is shown;
then the end of the connection. The bridge must end as closed by the
server, show the text, send the key press, and answer only with complete
Telnet commands. Each run is bounded."""

import asyncio
import collections
import itertools
import logging

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from telnetlib3.telopt import (BINARY, CHARSET, DO, DONT, ECHO, IAC, LINEMODE, LOGOUT, NAWS, NEW_ENVIRON, SB, SE,
                              SGA, STATUS, TM, TTYPE, WILL, WONT)

from sessions.bridges.base import BridgeResult, Input
from sessions.bridges.telnet import SERVER_CLOSED, TelnetOptions, run_telnet

BOUNDED = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WAIT = 10  # seconds for one session, far more than one takes
MARKER = b"fuzz-marker 7f3a\r\n"
# Whatever state the generated commands left the parser in (inside an SB, an
# IAC pending, a command waiting for its option byte), this brings it back
# to data: the first IAC SE completes a pending IAC or option, the second
# ends a subnegotiation.
RESYNC = IAC + SE + IAC + SE
TYPED = b"typed \xff\r"  # a key press with a byte that must go out doubled
TYPED_SENT = b"typed \xff\xff\r"

MCCP2, MCCP3, GMCP, ZMP = bytes([86]), bytes([87]), bytes([201]), bytes([93])

option_bytes = st.sampled_from([BINARY, ECHO, SGA, TTYPE, NAWS, LINEMODE, NEW_ENVIRON, CHARSET, MCCP2, MCCP3, GMCP,
                                ZMP, STATUS, TM, LOGOUT, IAC, SE]) | st.binary(min_size=1, max_size=1)
payloads = st.binary(max_size=40) | st.lists(
    st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x03", IAC + IAC, b"xterm", b"TERM", b"UTF-8", b";"]), max_size=8
).map(b"".join)
subnegotiated = st.sampled_from([NAWS, TTYPE, NEW_ENVIRON, LINEMODE, CHARSET, STATUS, MCCP2, MCCP3, GMCP, ZMP])
text = st.binary(max_size=60).map(lambda data: data.replace(IAC, IAC + IAC))
pieces = st.one_of(
    text,
    st.tuples(st.sampled_from([WILL, WONT, DO, DONT]), option_bytes).map(lambda c: IAC + b"".join(c)),
    st.tuples(subnegotiated | option_bytes, payloads).map(lambda s: IAC + SB + b"".join(s) + IAC + SE),
    st.tuples(subnegotiated, payloads).map(lambda s: IAC + SB + b"".join(s)),  # never terminated
    st.binary(min_size=1, max_size=1).map(lambda command: IAC + command),
    st.just(IAC + IAC),
    st.just(IAC),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


class ScriptedServer:
    """The device side of the tunnel: says its chunks one read at a time,
    waits (bounded) for the key press the terminal sends once it has shown
    the marker, then ends; keeps what the bridge sends back."""

    def __init__(self, chunks: list[bytes], yields: bool) -> None:
        self.chunks = collections.deque(chunks)
        self.yields = yields
        self.received = bytearray()
        self.typed = asyncio.Event()
        self.closed = False

    async def read(self) -> bytes:
        if self.chunks:
            if self.yields:  # as a socket would; the tunnel's queue may not
                await asyncio.sleep(0)
            return self.chunks.popleft()
        if not self.typed.is_set():
            try:
                await asyncio.wait_for(self.typed.wait(), WAIT / 2)
            except TimeoutError:
                pass  # the assertions on what was received tell why
        return b""

    async def write(self, data: bytes) -> None:
        self.received += data
        if TYPED_SENT in self.received:
            self.typed.set()

    async def close(self) -> None:
        self.closed = True


def incomplete_command(sent: bytes) -> str:
    """Why `sent` is not a sequence of data and complete Telnet commands, or
    "" when it is."""
    i = 0
    while i < len(sent):
        if sent[i] != IAC[0]:
            i += 1
            continue
        if i + 1 >= len(sent):
            return f"a lone IAC at the end, after {sent[:i][-20:]!r}"
        command = sent[i + 1]
        if command in (WILL[0], WONT[0], DO[0], DONT[0]):
            if i + 2 >= len(sent):
                return f"IAC {command} without its option at the end"
            i += 3
        elif command == SB[0]:
            end = i + 2
            while True:
                end = sent.find(IAC, end)
                if end == -1 or end + 1 >= len(sent):
                    return f"a subnegotiation never ended: {sent[i:][:40]!r}"
                if sent[end + 1] == SE[0]:
                    break
                if sent[end + 1] != IAC[0]:
                    return f"IAC {sent[end + 1]} inside a subnegotiation: {sent[i:end + 2][-40:]!r}"
                end += 2
            i = end + 2
        elif command >= SE[0]:
            i += 2
        else:
            return f"IAC followed by data byte {command}"
    return ""


async def session(chunks: list[bytes], yields: bool = True) -> tuple[BridgeResult, bytes, bytes, list[dict]]:
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    server = ScriptedServer(chunks, yields)
    events: asyncio.Queue = asyncio.Queue()
    screen = bytearray()

    async def output(data: bytes) -> None:
        screen.extend(data)
        if MARKER in screen and events.empty():
            await events.put(Input(TYPED))  # after whatever was negotiated

    async def status(state: str, message: str) -> None:
        pass

    result = await asyncio.wait_for(run_telnet(server, TelnetOptions(), events, output, status), WAIT)
    assert server.closed
    return result, bytes(screen), bytes(server.received), errors


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """telnetlib3 logs an exception it caught one line per record."""
    return [record.getMessage() for record in records if record.funcName == "_log_exception"]


@BOUNDED
@example(script=IAC + WILL + MCCP3, cuts=[], yields=True)  # would compress all we send
@example(script=IAC + WILL + MCCP2 + IAC + SB + MCCP2 + IAC + SE, cuts=[4], yields=False)
@example(script=IAC + SB + MCCP2 + IAC + SE, cuts=[], yields=True)  # unasked: would inflate the rest
@example(script=IAC + DO + NAWS + IAC + SB + NAWS + b"\x01" + IAC + SE, cuts=[], yields=True)
@example(script=IAC + WILL + CHARSET + IAC + SB + CHARSET + b"\x01" + IAC + SE, cuts=[], yields=True)
@given(script=st.lists(pieces, max_size=12).map(b"".join), cuts=st.lists(st.integers(0, 10_000), max_size=8),
       yields=st.booleans())
def test_any_option_negotiation_ends_cleanly_with_the_text_after_it_shown(caplog, script, cuts, yields):
    caplog.clear()
    chunks = split(script + RESYNC + MARKER, cuts)
    with caplog.at_level(logging.WARNING, logger="telnetlib3"):
        result, screen, sent, errors = asyncio.run(session(chunks, yields))
    assert result == BridgeResult(SERVER_CLOSED)
    assert MARKER in screen, screen[-80:]
    assert incomplete_command(sent) == ""
    assert TYPED_SENT in sent, sent[-80:]
    assert errors == []
    assert tracebacks(caplog.records) == []


@pytest.mark.parametrize("chunks", [[MARKER], [b"Login incorrect\r\n", MARKER], [IAC + DO + TTYPE + MARKER]])
def test_what_the_server_says_right_before_it_hangs_up_is_shown(chunks):
    async def last_words() -> bytes:
        server = ScriptedServer(chunks, yields=False)
        server.typed.set()  # nothing to wait for: it hangs up at once
        screen = bytearray()

        async def output(data: bytes) -> None:
            screen.extend(data)

        async def status(state: str, message: str) -> None:
            pass

        result = await asyncio.wait_for(run_telnet(server, TelnetOptions(), asyncio.Queue(), output, status), WAIT)
        assert result == BridgeResult(SERVER_CLOSED)
        return bytes(screen)

    assert asyncio.run(last_words()).endswith(MARKER)


@pytest.mark.parametrize("check", [
    (b"plain", ""),
    (IAC + IAC + IAC + WILL + ECHO + IAC + SB + TTYPE + IAC + IAC + IAC + SE, ""),
    (b"x" + IAC, "a lone IAC"),
    (IAC + DO, "without its option"),
    (IAC + SB + NAWS + b"\0", "never ended"),
    (IAC + SB + NAWS + IAC + WILL + ECHO, "inside a subnegotiation"),
    (IAC + b"A", "data byte"),
])
def test_the_wellformedness_check_can_fail(check):
    sent, problem = check
    found = incomplete_command(sent)
    assert (problem in found and found) if problem else found == ""
