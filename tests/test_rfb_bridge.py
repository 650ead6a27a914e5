"""The RFB bridge: against a real x11vnc (tests/vnc.py), against scripted
servers on loopback that play one handshake byte by byte, and fuzzed.

A plain TCP connection stands in for the device's tunnel. The browser is
played by hand: `Browser` speaks noVNC's side of the handshake and just
enough RFB to ask for the screen and look at its pixels."""

import asyncio
import collections
import itertools
import os
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from sessions.bridges.base import BridgeResult, StreamReaderWriter
from sessions.bridges.rfb import (
    AUTH_FAILED,
    BROWSER_CLOSED,
    BROWSER_TIMED_OUT,
    CLOSED_IN_HANDSHAKE,
    MALFORMED,
    MAX_REASON,
    NO_PASSWORD,
    SERVER_CLOSED,
    TIMED_OUT,
    RfbOptions,
    run_vnc,
)
from tests.vnc import HEIGHT, RED, WIDTH, VncServer, vnc_server

WAIT = 10  # seconds for any one thing to happen
PASSWORD = "pa55-Wörd"  # longer than 8 bytes in UTF-8: only the first 8 count

V33, V37, V38 = b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"
CHALLENGE = bytes(range(16))
NAME = b"scripted desktop"
# 32 bpp, depth 24, little-endian, true colour, 255 each, shifts 16/8/0.
PIXEL_FORMAT = struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def text(value: bytes) -> bytes:
    """An RFB string: its length, then its bytes."""
    return u32(len(value)) + value


SERVER_INIT = struct.pack(">HH", WIDTH, HEIGHT) + PIXEL_FORMAT + text(NAME)


def des_response(challenge: bytes, password: str) -> bytes:
    """VNC authentication's answer, worked out here on its own."""
    key = bytes(sum(((byte >> bit) & 1) << (7 - bit) for bit in range(8))
                for byte in (password.encode() + bytes(8))[:8])
    encryptor = Cipher(TripleDES(key + key + key), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


# The browser ----------------------------------------------------------------


@dataclass(frozen=True)
class ServerInit:
    width: int
    height: int
    pixel_format: bytes
    name: bytes


class Browser:
    """noVNC's end of the bridge (a BrowserBytes), played by a test."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.received = bytearray()
        self.taken = 0  # what `receive` has already handed out
        self._grew = asyncio.Event()

    # What the bridge sees.

    async def read(self) -> bytes:
        return await self.outbox.get()

    async def write(self, data: bytes) -> None:
        self.received += data
        self._grew.set()

    # What the page does.

    def send(self, data: bytes) -> None:
        self.outbox.put_nowait(data)

    def leave(self) -> None:
        self.outbox.put_nowait(b"")

    async def receive(self, size: int, timeout: float = WAIT) -> bytes:
        async def enough() -> None:
            while len(self.received) - self.taken < size:
                self._grew.clear()
                await self._grew.wait()

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(f"{size} bytes did not reach the browser within {timeout} s; it has "
                                 f"{bytes(self.received[self.taken:self.taken + 100])!r}") from None
        data = bytes(self.received[self.taken : self.taken + size])
        self.taken += size
        return data

    async def handshake(self, version: bytes = V38, shared: int = 1) -> ServerInit:
        """noVNC's side, up to and with ServerInit."""
        assert await self.receive(12) == V38
        self.send(version)
        if version == V33:
            assert await self.receive(4) == u32(1)  # the server chose None
        else:
            assert await self.receive(2) == b"\x01\x01"  # one type: None
            self.send(b"\x01")
            if version == V38:
                assert await self.receive(4) == u32(0)
        self.send(bytes([shared]))
        return await self.server_init()

    async def server_init(self) -> ServerInit:
        width, height = struct.unpack(">HH", await self.receive(4))
        pixel_format = await self.receive(16)
        length, = struct.unpack(">I", await self.receive(4))
        return ServerInit(width, height, pixel_format, await self.receive(length))

    async def screen(self, width: int, height: int) -> list[tuple[int, int, int]]:
        """Ask for the whole screen as raw 32-bit pixels; their colours, row by row."""
        self.send(b"\x00\x00\x00\x00" + PIXEL_FORMAT)  # SetPixelFormat
        self.send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: Raw
        self.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))  # FramebufferUpdateRequest
        pixels = bytearray(width * height * 4)
        while (kind := (await self.receive(1))[0]) != 0:
            if kind == 2:  # Bell
                continue
            assert kind == 3, f"unexpected server message {kind}"  # ServerCutText
            await self.receive(3)
            await self.receive(struct.unpack(">I", await self.receive(4))[0])
        _, count = struct.unpack(">BH", await self.receive(3))
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", await self.receive(12))
            assert encoding == 0, f"asked for Raw, got encoding {encoding}"
            data = await self.receive(w * h * 4)
            for row in range(h):
                start = ((y + row) * width + x) * 4
                pixels[start : start + w * 4] = data[row * w * 4 : (row + 1) * w * 4]
        values = struct.unpack(f"<{width * height}I", pixels)
        return [((v >> 16) & 255, (v >> 8) & 255, v & 255) for v in values]


# Sessions -------------------------------------------------------------------


@dataclass
class Session:
    browser: Browser
    task: asyncio.Task[BridgeResult]
    statuses: list[tuple[str, str]] = field(default_factory=list)

    async def result(self, timeout: float = WAIT) -> BridgeResult:
        return await asyncio.wait_for(asyncio.shield(self.task), timeout)


@asynccontextmanager
async def session(port: int, **options: Any) -> AsyncIterator[Session]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
    stream = StreamReaderWriter(reader, writer)
    browser = Browser()
    statuses: list[tuple[str, str]] = []

    async def status(state: str, message: str) -> None:
        statuses.append((state, message))

    task = asyncio.create_task(run_vnc(stream, RfbOptions(**options), browser, status))
    try:
        yield Session(browser, task, statuses)
    finally:
        if not task.done():
            browser.leave()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), WAIT)
        await stream.close()


# Scripted servers ------------------------------------------------------------

CLOSE = "close"  # a script's step: the server closes the connection


@dataclass(frozen=True)
class Pause:
    seconds: float


class Script:
    """A VNC server that plays a script: bytes to send, the number of bytes
    to read (kept in `heard`), pauses, CLOSE. At its end it keeps reading
    (into `after`) until the client closes."""

    def __init__(self, steps: tuple) -> None:
        self.steps = steps
        self.heard: list[bytes] = []
        self.after = bytearray()
        self.ended = asyncio.Event()
        self.stopping = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.players: list[asyncio.Task] = []

    async def play(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.players.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            for step in self.steps:
                if step == CLOSE:
                    return
                if isinstance(step, Pause):
                    try:
                        await asyncio.wait_for(self.stopping.wait(), step.seconds)
                        return  # the test is over
                    except TimeoutError:
                        pass
                elif isinstance(step, bytes):
                    writer.write(step)
                    await writer.drain()
                else:
                    self.heard.append(await reader.readexactly(step))
            while data := await reader.read(65536):
                self.after += data
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.ended.set()

    async def hears(self, size: int) -> bytes:
        """The next `size` bytes the client sends after the script."""
        async def enough() -> None:
            while len(self.after) < size and not self.ended.is_set():
                await asyncio.sleep(0.005)

        await asyncio.wait_for(enough(), WAIT)
        data = bytes(self.after[:size])
        del self.after[:size]
        return data


@asynccontextmanager
async def scripted(*steps: Any) -> AsyncIterator[tuple[Script, int]]:
    script = Script(steps)
    server = await asyncio.start_server(script.play, "127.0.0.1", 0)
    try:
        yield script, server.sockets[0].getsockname()[1]
    finally:
        # Let every player end before the loop does (Python 3.11 logs an
        # error for a connection handler that ends cancelled).
        script.stopping.set()
        for writer in script.writers:
            writer.close()
        if script.players:
            await asyncio.wait(script.players, timeout=WAIT)
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


async def connected(*steps: Any, browser_version: bytes = V38, **options: Any) -> tuple[Script, ServerInit]:
    """Play `steps` to the bridge with a browser that completes the
    handshake; the ServerInit the browser got. Then the browser leaves."""
    async with scripted(*steps) as (script, port), session(port, **options) as s:
        init = await s.browser.handshake(browser_version)
        s.browser.leave()
        assert await s.result() == BridgeResult(BROWSER_CLOSED)
        assert s.statuses == [("handshake", "starting VNC handshake"), ("connected", "")]
    return script, init


async def failure(*steps: Any, **options: Any) -> BridgeResult:
    """Play `steps` to the bridge; how it failed. Nothing reached the browser."""
    async with scripted(*steps) as (_, port), session(port, **options) as s:
        result = await s.result()
    assert result.failed, result
    assert s.browser.received == b"", "the browser heard something before the server let us in"
    assert s.statuses == [("handshake", "starting VNC handshake")]
    return result


# Against a real x11vnc --------------------------------------------------------


@pytest.fixture(scope="module")
def open_server() -> Iterator[VncServer]:
    with vnc_server() as running:
        yield running


@pytest.fixture(scope="module", params=["rfbauth", "passwd"])
def locked_server(request: pytest.FixtureRequest) -> Iterator[VncServer]:
    with vnc_server(PASSWORD, passwd_option=request.param == "passwd") as running:
        yield running


async def shows_the_red_screen(server: VncServer, password: str) -> None:
    assert server.pixel(WIDTH // 2, HEIGHT // 2) == RED  # what X itself shows
    async with session(server.port, password=password) as s:
        init = await s.browser.handshake()
        assert (init.width, init.height) == (WIDTH, HEIGHT)
        assert s.statuses == [("handshake", "starting VNC handshake"), ("connected", "")]
        pixels = await s.browser.screen(init.width, init.height)
        # All red but for the X cursor, which x11vnc draws in, wherever the
        # pointer is, for a viewer that does not take cursor shapes (as ours).
        assert pixels.count(RED) >= len(pixels) - 32 * 32
    assert await s.result() == BridgeResult(BROWSER_CLOSED)


@pytest.mark.asyncio
async def test_it_shows_the_real_servers_red_screen_with_no_password(open_server: VncServer) -> None:
    await shows_the_red_screen(open_server, "")


@pytest.mark.asyncio
async def test_it_logs_in_to_the_real_server_with_its_vnc_password(locked_server: VncServer) -> None:
    await shows_the_red_screen(locked_server, PASSWORD)


@pytest.mark.asyncio
async def test_a_wrong_password_fails_on_the_real_server_without_showing_it(locked_server: VncServer) -> None:
    async with session(locked_server.port, password="not-it-at-all") as s:
        result = await s.result()
    assert result.failed
    assert result.reason.startswith(AUTH_FAILED)
    assert "not-it-at-all" not in result.reason and PASSWORD not in result.reason
    assert s.browser.received == b""


# Versions and security types ---------------------------------------------------


@pytest.mark.asyncio
async def test_it_speaks_3_3_when_the_server_chooses_none() -> None:
    script, init = await connected(V33, 12, u32(1), 1, SERVER_INIT)
    assert script.heard == [V33, b"\x01"]  # our version, then ClientInit (shared)
    assert init == ServerInit(WIDTH, HEIGHT, PIXEL_FORMAT, NAME)


@pytest.mark.asyncio
async def test_it_answers_vnc_authentication_chosen_by_a_3_3_server() -> None:
    script, _ = await connected(V33, 12, u32(2) + CHALLENGE, 16, u32(0), 1, SERVER_INIT, password=PASSWORD)
    assert script.heard == [V33, des_response(CHALLENGE, PASSWORD), b"\x01"]


@pytest.mark.asyncio
async def test_it_answers_3_4_to_3_6_as_3_3() -> None:
    script, _ = await connected(b"RFB 003.006\n", 12, u32(1), 1, SERVER_INIT)
    assert script.heard[0] == V33


@pytest.mark.asyncio
async def test_it_expects_no_security_result_after_none_in_3_7() -> None:
    script, init = await connected(V37, 12, b"\x01\x01", 1, 1, SERVER_INIT)
    assert script.heard == [V37, b"\x01", b"\x01"]
    assert init.name == NAME


@pytest.mark.asyncio
async def test_it_reads_the_security_result_after_vnc_authentication_in_3_7() -> None:
    steps = (V37, 12, b"\x01\x02", 1, CHALLENGE, 16, u32(0), 1, SERVER_INIT)
    script, _ = await connected(*steps, password=PASSWORD)
    assert script.heard == [V37, b"\x02", des_response(CHALLENGE, PASSWORD), b"\x01"]


@pytest.mark.asyncio
async def test_it_chooses_none_in_3_8_when_offered_besides_vnc_authentication() -> None:
    script, _ = await connected(V38, 12, b"\x02\x02\x01", 1, u32(0), 1, SERVER_INIT, password=PASSWORD)
    assert script.heard == [V38, b"\x01", b"\x01"]


@pytest.mark.asyncio
async def test_it_answers_vnc_authentication_in_3_8() -> None:
    steps = (V38, 12, b"\x02\x10\x02", 1, CHALLENGE, 16, u32(0), 1, SERVER_INIT)
    script, _ = await connected(*steps, password=PASSWORD)
    assert script.heard == [V38, b"\x02", des_response(CHALLENGE, PASSWORD), b"\x01"]


@pytest.mark.asyncio
@pytest.mark.parametrize("announced", [b"RFB 003.889\n", b"RFB 004.001\n", b"RFB 005.000\n", b"RFB 003.010\n"])
async def test_it_answers_newer_versions_as_3_8(announced: bytes) -> None:
    script, _ = await connected(announced, 12, b"\x01\x01", 1, u32(0), 1, SERVER_INIT)
    assert script.heard[0] == V38


@pytest.mark.asyncio
async def test_a_server_that_refuses_the_version_we_answered_says_which_it_announced() -> None:
    result = await failure(b"RFB 004.001\n", 12, b"\x00" + text(b"unsupported protocol version"))
    assert result.reason == ("the VNC server announced version 4.1 and refused version 3.8: "
                             "unsupported protocol version")


@pytest.mark.asyncio
async def test_a_server_that_refuses_with_a_reason_says_why() -> None:
    result = await failure(V38, 12, b"\x00" + text(b"Too many security failures"))
    assert result.reason == "the VNC server refused the connection: Too many security failures"


@pytest.mark.asyncio
async def test_a_3_3_server_that_refuses_with_a_reason_says_why() -> None:
    result = await failure(V33, 12, u32(0) + text(b"go away"))
    assert result.reason == "the VNC server refused the connection: go away"


@pytest.mark.asyncio
async def test_a_server_with_only_vencrypt_is_refused_with_advice() -> None:
    result = await failure(V38, 12, b"\x01\x13", password=PASSWORD)
    assert result.reason == ("the VNC server requires security type 19 (VeNCrypt), which is not supported; "
                             "enable VNC authentication on the server")


@pytest.mark.asyncio
async def test_every_unsupported_type_offered_is_named() -> None:
    result = await failure(V38, 12, b"\x04\x13\x1e\x71\x63", password=PASSWORD)
    assert "security types 19 (VeNCrypt), 30 (Apple), 113 (MSLogon II), 99 (unknown)" in result.reason
    assert result.reason.endswith("enable VNC authentication on the server")


@pytest.mark.asyncio
async def test_a_server_that_wants_a_password_when_none_is_stored_gets_nothing_more() -> None:
    async with scripted(V38, 12, b"\x01\x02") as (script, port), session(port) as s:
        result = await s.result()
        await asyncio.wait_for(script.ended.wait(), WAIT)
    assert result == BridgeResult(NO_PASSWORD, failed=True)
    assert script.heard == [V38] and script.after == b""


@pytest.mark.asyncio
async def test_a_wrong_password_says_so_with_the_servers_reason() -> None:
    steps = (V38, 12, b"\x01\x02", 1, CHALLENGE, 16, u32(1) + text(b"Authentication failure"))
    result = await failure(*steps, password=PASSWORD)
    assert result.reason == "VNC authentication failed (Authentication failure)"


@pytest.mark.asyncio
@pytest.mark.parametrize("version", [V33, V37])
async def test_a_wrong_password_before_3_8_says_so_without_a_reason(version: bytes) -> None:
    security = u32(2) if version == V33 else b"\x01\x02"
    steps = [version, 12, security] + ([] if version == V33 else [1]) + [CHALLENGE, 16, u32(1), CLOSE]
    result = await failure(*steps, password=PASSWORD)
    assert result.reason == AUTH_FAILED


@pytest.mark.asyncio
async def test_a_wrong_password_says_so_when_the_server_hangs_up_before_its_reason() -> None:
    result = await failure(V38, 12, b"\x01\x02", 1, CHALLENGE, 16, u32(1), CLOSE, password=PASSWORD)
    assert result.reason == AUTH_FAILED


# Broken servers -----------------------------------------------------------------

CLOSING = {
    "at once": [CLOSE],
    "within the version": [b"RFB 003", CLOSE],
    "before reading our version": [V38, CLOSE],
    "before the security types": [V38, 12, CLOSE],
    "before the types counted": [V38, 12, b"\x02", CLOSE],
    "within the types": [V38, 12, b"\x02\x13", CLOSE],
    "before the challenge": [V38, 12, b"\x01\x02", 1, CLOSE],
    "within the challenge": [V38, 12, b"\x01\x02", 1, CHALLENGE[:7], CLOSE],
    "before the security result": [V38, 12, b"\x01\x02", 1, CHALLENGE, 16, CLOSE],
    "within the security result": [V38, 12, b"\x01\x02", 1, CHALLENGE, 16, b"\x00\x00", CLOSE],
    "before the security result after none": [V38, 12, b"\x01\x01", 1, CLOSE],
    "before a refusal's reason": [V38, 12, b"\x00", CLOSE],
    "within a refusal's reason": [V38, 12, b"\x00" + u32(40) + b"not all of it", CLOSE],
    "before a 3.3 security type": [V33, 12, CLOSE],
    "within a 3.3 security type": [V33, 12, b"\x00\x00", CLOSE],
    "within a 3.3 challenge": [V33, 12, u32(2) + b"short", CLOSE],
    "before a 3.7 security result": [V37, 12, b"\x01\x02", 1, CHALLENGE, 16, CLOSE],
}


@pytest.mark.asyncio
@pytest.mark.parametrize("steps", CLOSING.values(), ids=CLOSING.keys())
async def test_a_server_closing_during_the_handshake_fails_cleanly(steps: list) -> None:
    result = await failure(*steps, password=PASSWORD)
    assert result.reason == CLOSED_IN_HANDSHAKE


@pytest.mark.asyncio
@pytest.mark.parametrize("length", [0xFFFFFFFF, MAX_REASON + 1])
@pytest.mark.parametrize("where", ["refusal", "security result"])
async def test_an_oversized_reason_is_refused_at_once(length: int, where: str) -> None:
    if where == "refusal":
        steps = [V38, 12, b"\x00" + u32(length)]
    else:
        steps = [V38, 12, b"\x01\x02", 1, CHALLENGE, 16, u32(1) + u32(length)]
    # Waiting for the length to arrive would end in the step's timeout, not this reason.
    result = await failure(*steps, password=PASSWORD)
    assert result.reason == MALFORMED


@pytest.mark.asyncio
async def test_a_long_reason_is_shown_cut_short_on_one_line() -> None:
    reason = b"line one\r\nline two\x00 " + b"x" * (MAX_REASON - 20)
    result = await failure(V38, 12, b"\x00" + text(reason))
    assert result.reason.startswith("the VNC server refused the connection: line one line two xxx")
    assert result.reason.endswith("…") and len(result.reason) < 300


GARBAGE = {
    "ssh": (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "'SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n'"),
    "telnet": (b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27", "'\\xff\\xfd\\x18\\xff\\xfd \\xff\\xfd#"),
    "letters for digits": (b"RFB 003.00x\n", "'RFB 003.00x\\n'"),
    "html": (b"<html>" * 20, "'" + ("<html>" * 7)[:40] + "…'"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("sent, shown", GARBAGE.values(), ids=GARBAGE.keys())
async def test_a_target_that_is_not_a_vnc_server_is_named_with_what_it_sent(sent: bytes, shown: str) -> None:
    # The target then waits, so waiting with it would end in the step's timeout, not this reason.
    result = await failure(sent)
    assert result.reason.startswith(f"the target did not answer as a VNC server (it sent {shown}")


@pytest.mark.asyncio
async def test_a_target_that_sends_a_few_wrong_bytes_and_closes_is_not_a_vnc_server() -> None:
    result = await failure(b"HTTP/1", CLOSE)
    assert result.reason == "the target did not answer as a VNC server (it sent 'HTTP/1')"


@pytest.mark.asyncio
async def test_a_version_older_than_3_is_not_supported() -> None:
    result = await failure(b"RFB 002.000\n")
    assert result.reason == "the VNC server announced version 2.0, which is not supported"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "steps", [[], [V38, 12], [V38, 12, b"\x01\x02", 1]], ids=["silent", "no types", "no challenge"]
)
async def test_a_silent_server_times_out(steps: list) -> None:
    result = await failure(*steps, password=PASSWORD, timeout=0.2)
    assert result.reason == TIMED_OUT


@pytest.mark.asyncio
async def test_a_server_dripping_bytes_cannot_stretch_a_step_past_the_timeout() -> None:
    drip = [item for byte in V38 for item in (bytes([byte]), Pause(0.05))]
    result = await failure(*drip, timeout=0.3)
    assert result.reason == TIMED_OUT


# Passing through ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_server_init_in_the_same_segment_as_the_security_result_reaches_the_browser() -> None:
    script, init = await connected(V38, 12, b"\x01\x01", 1, u32(0) + SERVER_INIT, 1)
    assert init == ServerInit(WIDTH, HEIGHT, PIXEL_FORMAT, NAME)
    assert script.heard == [V38, b"\x01", b"\x01"]


@pytest.mark.asyncio
async def test_a_server_that_sends_its_whole_side_at_once_loses_nothing() -> None:
    script, init = await connected(V38 + b"\x01\x01" + u32(0) + SERVER_INIT + b"\x02", 12, 1, 1)
    assert init.name == NAME
    assert script.heard == [V38, b"\x01", b"\x01"]


@pytest.mark.asyncio
async def test_bytes_pass_through_both_ways_untouched() -> None:
    upstream = os.urandom(300_000)
    downstream = os.urandom(100_000)
    async with scripted(V38, 12, b"\x01\x01", 1, u32(0), 1, SERVER_INIT) as (script, port), session(port) as s:
        await s.browser.handshake()
        for start in range(0, len(downstream), 7000):
            s.browser.send(downstream[start : start + 7000])
        assert await script.hears(len(downstream)) == downstream
        script.writers[0].write(upstream)
        assert await s.browser.receive(len(upstream)) == upstream
        script.writers[0].close()  # the server hangs up
        assert await s.result() == BridgeResult(SERVER_CLOSED)
    assert script.heard == [V38, b"\x01", b"\x01"]


@pytest.mark.asyncio
async def test_what_the_browser_sends_with_its_client_init_goes_upstream_after_it() -> None:
    set_encodings = struct.pack(">BxHi", 2, 1, 0)
    async with scripted(V38, 12, b"\x01\x01", 1, u32(0), 1, SERVER_INIT) as (script, port), session(port) as s:
        assert await s.browser.receive(12) == V38
        s.browser.send(V38)
        assert await s.browser.receive(2) == b"\x01\x01"
        s.browser.send(b"\x01")
        assert await s.browser.receive(4) == u32(0)
        s.browser.send(b"\x00" + set_encodings)  # not shared, and a message at once
        assert await s.browser.server_init() == ServerInit(WIDTH, HEIGHT, PIXEL_FORMAT, NAME)
        assert await script.hears(len(set_encodings)) == set_encodings
    assert script.heard[-1] == b"\x00"  # the browser's shared flag, as it was


@pytest.mark.asyncio
async def test_the_server_connection_is_closed_when_the_browser_leaves() -> None:
    async with scripted(V38, 12, b"\x01\x01", 1, u32(0), 1, SERVER_INIT) as (script, port), session(port) as s:
        await s.browser.handshake()
        s.browser.leave()
        assert await s.result() == BridgeResult(BROWSER_CLOSED)
        await asyncio.wait_for(script.ended.wait(), WAIT)


class MemoryStream:
    """A ByteStream that hands out the chunks it was given, then ends."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = collections.deque(chunks)
        self.reads = 0
        self.written = bytearray()
        self.closed = False

    async def read(self) -> bytes:
        self.reads += 1
        await asyncio.sleep(0)
        return self.chunks.popleft() if self.chunks else b""

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        self.closed = True


@pytest.mark.asyncio
async def test_it_reads_nothing_more_from_the_server_while_the_browser_is_behind() -> None:
    stream = MemoryStream([V38, b"\x01\x01", u32(0), SERVER_INIT] + [b"frame"] * 10)
    browser = Browser()
    browser.send(V38 + b"\x01\x01")
    taking = asyncio.Event()
    release = asyncio.Event()
    original_write = browser.write

    async def slow_write(data: bytes) -> None:
        await original_write(data)
        if data.startswith(SERVER_INIT):  # the page is busy with the first screen
            taking.set()
            await release.wait()

    browser.write = slow_write  # type: ignore[method-assign]

    async def status(state: str, message: str) -> None:
        pass

    task = asyncio.create_task(run_vnc(stream, RfbOptions(), browser, status))
    await asyncio.wait_for(taking.wait(), WAIT)
    reads = stream.reads
    for _ in range(20):
        await asyncio.sleep(0)
    assert stream.reads == reads
    release.set()
    assert await asyncio.wait_for(task, WAIT) == BridgeResult(SERVER_CLOSED)
    assert browser.received.endswith(b"frame" * 10)
    assert stream.closed


# The browser's side -------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_browser_answering_3_3_is_given_none_without_a_security_result() -> None:
    _, init = await connected(V38, 12, b"\x01\x01", 1, u32(0), 1, SERVER_INIT, browser_version=V33)
    assert init.name == NAME


@pytest.mark.asyncio
async def test_a_browser_answering_3_7_gets_no_security_result_after_none() -> None:
    _, init = await connected(V38, 12, b"\x01\x01", 1, u32(0), 1, SERVER_INIT, browser_version=V37)
    assert init.name == NAME


BROWSER_MISTAKES = {
    "a strange version": [b"RFB 004.000\n"],
    "another security type": [V38, b"\x02"],
    "leaving at once": [b""],
    "leaving after its version": [V38, b""],
    "leaving before its client init": [V38, b"\x01", b""],
}


@pytest.mark.asyncio
@pytest.mark.parametrize("sends", BROWSER_MISTAKES.values(), ids=BROWSER_MISTAKES.keys())
async def test_a_browser_that_breaks_off_the_handshake_is_not_a_failure(sends: list[bytes]) -> None:
    async with scripted(V38, 12, b"\x01\x01", 1, u32(0)) as (_, port), session(port) as s:
        for data in sends:
            s.browser.send(data)
        assert await s.result() == BridgeResult(BROWSER_CLOSED)


@pytest.mark.asyncio
async def test_a_browser_that_never_answers_times_out_without_failing() -> None:
    async with scripted(V38, 12, b"\x01\x01", 1, u32(0)) as (_, port), session(port, timeout=0.2) as s:
        assert await s.result() == BridgeResult(BROWSER_TIMED_OUT)


def test_the_options_never_show_the_password() -> None:
    assert PASSWORD not in repr(RfbOptions(password=PASSWORD))


# Fuzzing --------------------------------------------------------------------------


def run_with(server_chunks: list[bytes], browser_sends: list[bytes]) -> tuple[BridgeResult, Browser]:
    """One bridge over an in-memory stream, bounded in time."""
    async def main() -> tuple[BridgeResult, Browser]:
        browser = Browser()
        for data in browser_sends:
            browser.send(data)
        browser.leave()

        async def status(state: str, message: str) -> None:
            pass

        options = RfbOptions(password=PASSWORD, timeout=1)
        result = await asyncio.wait_for(run_vnc(MemoryStream(server_chunks), options, browser, status), 3)
        return result, browser

    return asyncio.run(main())


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def test_random_server_bytes_after_a_valid_version_never_raise_or_hang() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    pieces = st.one_of(
        st.binary(max_size=12),
        st.sampled_from([b"\x01\x01", b"\x01\x02", b"\x00", u32(0), u32(1), u32(2), u32(0xFFFFFFFF),
                         text(b"reason"), CHALLENGE, SERVER_INIT]),
    )

    @hypothesis.settings(max_examples=200, deadline=3000, database=None)
    @hypothesis.given(
        version=st.sampled_from([V33, V37, V38, b"RFB 003.889\n", b"RFB 004.001\n"]),
        rest=st.lists(pieces, max_size=8).map(b"".join),
        cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
    )
    def check(version: bytes, rest: bytes, cuts: list[int]) -> None:
        result, browser = run_with(chunked(version + rest, cuts), [V38, b"\x01", b"\x01"])
        assert isinstance(result, BridgeResult)
        assert PASSWORD not in result.reason
        if result.failed:
            assert browser.received == b""

    check()


def test_random_browser_bytes_never_raise_hang_or_fail_the_connection() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=100, deadline=3000, database=None)
    @hypothesis.given(sends=st.lists(st.binary(max_size=16), max_size=6))
    def check(sends: list[bytes]) -> None:
        result, _ = run_with([V38, b"\x01\x01", u32(0), SERVER_INIT], [data for data in sends if data])
        assert result in (BridgeResult(BROWSER_CLOSED), BridgeResult(SERVER_CLOSED))

    check()
