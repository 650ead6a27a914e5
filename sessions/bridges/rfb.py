"""A VNC screen over a tunnel: the RFB handshake done here, then raw bytes.

The gateway holds the VNC password, so it does the version and security
handshake with the real server itself (RFC 6143, section 7.1), and offers
noVNC a server that asks for nothing (security type None). From ClientInit
on, the bytes pass through untouched both ways; noVNC does not look at the
upstream version after the handshake (see DESIGN.md, field notes).

Upstream first: nothing is written to the browser until the real server has
let us in, so a failure reaches the page as the session's reason, not as a
half-finished handshake. Versions 3.3, 3.7 and 3.8 are spoken as such;
3.4 to 3.6 (UltraVNC) as 3.3, as the RFC says; anything newer (Apple's 3.889,
RealVNC's 4.x and 5.x) is answered as 3.8. We choose None when the server
offers it, else VNC authentication when a password is stored. Each step of
the upstream handshake is bounded by `timeout`; a truncated, oversized or
unknown message ends the session as failed, with a message that never holds
the password.

The bridge closes the stream when it is done (closing twice is harmless).
"""

import asyncio
import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from sessions.bridges.base import BridgeResult, BrowserBytes, ByteStream, Status

SERVER_CLOSED = "the VNC server closed the connection"
BROWSER_CLOSED = "closed in the browser"
BROWSER_TIMED_OUT = "timed out waiting for the browser during the handshake"
CLOSED_IN_HANDSHAKE = "the VNC server closed the connection during the handshake"
TIMED_OUT = "timed out waiting for the VNC server during the handshake"
MALFORMED = "the VNC server sent a malformed message"
AUTH_FAILED = "VNC authentication failed"
NO_PASSWORD = "the VNC server asks for a password, but the endpoint has none stored"
NOT_VNC = "the target did not answer as a VNC server"
REFUSED = "the VNC server refused the connection"
UNSUPPORTED_ADVICE = "enable VNC authentication on the server"

NONE, VNC_AUTH = 1, 2
SECURITY_TYPES = {
    0: "Invalid", 1: "None", 2: "VNC Authentication", 5: "RA2", 6: "RA2ne", 16: "Tight", 17: "Ultra",
    18: "TLS", 19: "VeNCrypt", 20: "SASL", 21: "MD5 hash", 22: "xvp", 30: "Apple", 113: "MSLogon II",
    129: "Unix Login",
}
MAX_REASON = 64 * 1024  # longest reason string we accept from the server
CLOSE_TIMEOUT = 5.0

_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
_VERSION_SHAPE = b"RFB 000.000\n"  # "0" stands for any digit
_BROWSER_VERSIONS = {b"RFB 003.003\n": (3, 3), b"RFB 003.007\n": (3, 7), b"RFB 003.008\n": (3, 8)}
_REVERSED_BITS = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


@dataclass(frozen=True)
class RfbOptions:
    password: str = field(default="", repr=False)  # the endpoint's VNC password; never sent to the browser
    timeout: float = 30.0  # for each handshake step


class _Ended(Exception):
    """The peer's stream ended."""


class _Failed(Exception):
    """The upstream handshake failed, for the reason given."""


class _Reader:
    """Exact-length reads over a stream's `read()`; bytes that arrive early
    stay in `buffer` for whoever reads next."""

    def __init__(self, read: Callable[[], Awaitable[bytes]], timeout: float) -> None:
        self._read = read
        self.timeout = timeout
        self.buffer = bytearray()

    async def fill(self) -> None:
        try:
            data = await self._read()
        except OSError:
            data = b""
        if not data:
            raise _Ended
        self.buffer += data

    async def exactly(self, size: int) -> bytes:
        """`size` bytes, within the timeout (TimeoutError) or _Ended."""
        async with asyncio.timeout(self.timeout):
            while len(self.buffer) < size:
                await self.fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def u32(self) -> int:
        return struct.unpack(">I", await self.exactly(4))[0]

    def rest(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


async def run_vnc(stream: ByteStream, options: RfbOptions, browser: BrowserBytes, status: Status) -> BridgeResult:
    await status("handshake", "starting VNC handshake")
    server = _Reader(stream.read, options.timeout)
    try:
        try:
            await _server_handshake(server, stream, options.password)
        except _Failed as failure:
            return BridgeResult(str(failure), failed=True)
        except TimeoutError:  # before OSError, its base class
            return BridgeResult(TIMED_OUT, failed=True)
        except (_Ended, OSError):
            return BridgeResult(CLOSED_IN_HANDSHAKE, failed=True)

        page = _Reader(browser.read, options.timeout)
        try:
            shared = await _browser_handshake(page, browser)
        except TimeoutError:
            return BridgeResult(BROWSER_TIMED_OUT)
        except (_Ended, OSError):
            return BridgeResult(BROWSER_CLOSED)

        try:
            await stream.write(shared + page.rest())  # ClientInit, and whatever the page sent after it
        except OSError:
            return BridgeResult(CLOSED_IN_HANDSHAKE, failed=True)
        await status("connected", "")
        return await _pass_through(stream, server.rest(), browser)
    finally:
        try:
            await asyncio.wait_for(stream.close(), CLOSE_TIMEOUT)
        except OSError:  # TimeoutError included
            pass


async def _server_handshake(server: _Reader, stream: ByteStream, password: str) -> None:
    announced = await _server_version(server)
    if announced[0] < 3:
        raise _Failed(f"the VNC server announced version {_dotted(announced)}, which is not supported")
    version = (3, 3) if announced < (3, 7) else (3, 7) if announced < (3, 8) else (3, 8)
    await stream.write(b"RFB %03d.%03d\n" % version)
    refused = REFUSED
    if announced != version:
        refused = f"the VNC server announced version {_dotted(announced)} and refused version {_dotted(version)}"

    if version == (3, 3):  # the server chooses
        offered = [await server.u32()]
        if offered == [0]:
            raise _Failed(_with_reason(refused, await _reason(server)))
    else:
        count = (await server.exactly(1))[0]
        if count == 0:
            raise _Failed(_with_reason(refused, await _reason(server)))
        offered = list(await server.exactly(count))
    chosen = _choose(offered, bool(password))
    if version != (3, 3):
        await stream.write(bytes([chosen]))
    if chosen == VNC_AUTH:
        challenge = await server.exactly(16)
        await stream.write(vnc_auth_response(challenge, password))
    elif version != (3, 8):
        return  # before 3.8, no SecurityResult after None

    result = await server.u32()
    if result == 0:
        return
    reason = ""
    if version == (3, 8):
        try:
            reason = await _reason(server)
        except (_Ended, OSError):  # OSError includes TimeoutError
            pass  # the result alone says enough
    elif result == 2:
        reason = "too many attempts"  # TightVNC's 3.3
    if chosen == VNC_AUTH:
        raise _Failed(f"{AUTH_FAILED} ({reason})" if reason else AUTH_FAILED)
    raise _Failed(_with_reason(refused, reason))


async def _server_version(server: _Reader) -> tuple[int, int]:
    """The server's ProtocolVersion; whatever does not look like one fails
    as soon as it is seen, with what was sent."""
    try:
        async with asyncio.timeout(server.timeout):
            while len(server.buffer) < len(_VERSION_SHAPE) and _could_be_version(server.buffer):
                await server.fill()
    except (_Ended, TimeoutError):
        if _could_be_version(server.buffer):
            raise
    match = _VERSION.fullmatch(server.buffer[: len(_VERSION_SHAPE)])
    if match is None:
        raise _Failed(f"{NOT_VNC} (it sent '{_printable(bytes(server.buffer))}')")
    del server.buffer[: len(_VERSION_SHAPE)]
    return int(match[1]), int(match[2])


def _could_be_version(data: bytes | bytearray) -> bool:
    return all(48 <= byte <= 57 if shape == 48 else byte == shape for shape, byte in zip(_VERSION_SHAPE, data))


def _choose(offered: list[int], have_password: bool) -> int:
    if NONE in offered:
        return NONE
    if VNC_AUTH in offered:
        if not have_password:
            raise _Failed(NO_PASSWORD)
        return VNC_AUTH
    kinds = list(dict.fromkeys(offered))
    named = ", ".join(f"{kind} ({SECURITY_TYPES.get(kind, 'unknown')})" for kind in kinds[:8])
    if len(kinds) > 8:
        named += ", …"
    if len(kinds) == 1:
        raise _Failed(f"the VNC server requires security type {named}, which is not supported; {UNSUPPORTED_ADVICE}")
    raise _Failed(
        f"the VNC server requires one of security types {named}, none of which is supported; {UNSUPPORTED_ADVICE}"
    )


def vnc_auth_response(challenge: bytes, password: str) -> bytes:
    """VNC authentication: the challenge DES-encrypted with the password (at
    most 8 bytes, padded with NULs), each key byte's bits reversed. Triple
    DES with one key three times is single DES."""
    key = bytes(_REVERSED_BITS[byte] for byte in password.encode()[:8].ljust(8, b"\0"))
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


async def _reason(server: _Reader) -> str:
    length = await server.u32()
    if length > MAX_REASON:
        raise _Failed(MALFORMED)
    return _text(await server.exactly(length))


def _with_reason(message: str, reason: str) -> str:
    return f"{message}: {reason}" if reason else message


def _text(raw: bytes, limit: int = 200) -> str:
    """A reason string from the server, made safe to show: one line, not too long."""
    text = " ".join("".join(c if c.isprintable() else " " for c in raw.decode(errors="replace")).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _printable(data: bytes, limit: int = 40) -> str:
    escapes = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
    text = "".join(
        chr(byte) if 32 <= byte < 127 else escapes.get(byte, f"\\x{byte:02x}") for byte in data[:limit]
    )
    return text + "…" if len(data) > limit else text


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


async def _browser_handshake(page: _Reader, browser: BrowserBytes) -> bytes:
    """noVNC's side, as a server that asks for nothing; returns ClientInit."""
    await browser.write(b"RFB 003.008\n")
    version = _BROWSER_VERSIONS.get(await page.exactly(12))
    if version is None:
        raise _Ended
    if version == (3, 3):
        await browser.write(struct.pack(">I", NONE))
    else:
        await browser.write(bytes([1, NONE]))
        if await page.exactly(1) != bytes([NONE]):
            raise _Ended
        if version == (3, 8):
            await browser.write(struct.pack(">I", 0))
    return await page.exactly(1)  # ClientInit: the shared flag


async def _pass_through(stream: ByteStream, early: bytes, browser: BrowserBytes) -> BridgeResult:
    pending = {
        asyncio.create_task(_to_browser(stream, early, browser)),
        asyncio.create_task(_to_server(browser, stream)),
    }
    try:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _to_browser(stream: ByteStream, early: bytes, browser: BrowserBytes) -> BridgeResult:
    data = early  # ServerInit may have come with the last handshake message
    try:
        while True:
            if data:
                try:
                    await browser.write(data)
                except OSError:
                    return BridgeResult(BROWSER_CLOSED)
            if not (data := await stream.read()):
                break
    except OSError:
        pass
    return BridgeResult(SERVER_CLOSED)


async def _to_server(browser: BrowserBytes, stream: ByteStream) -> BridgeResult:
    try:
        while data := await browser.read():
            try:
                await stream.write(data)
            except OSError:
                return BridgeResult(SERVER_CLOSED)
    except OSError:
        pass
    return BridgeResult(BROWSER_CLOSED)
