"""A Telnet terminal over a tunnel: telnetlib3's client protocol, fed by hand.

telnetlib3 only opens sockets itself, so the client protocol is given a
transport of ours over the ByteStream (see DESIGN.md, field notes). The
client does the option negotiation; we ask for BINARY both ways (UTF-8
passes untouched), the server's ECHO and SGA (the browser's terminal does no
local echo or line editing) and answer TTYPE and NAWS. LINEMODE is refused:
xterm.js sends every key as it is typed. IAC bytes in the data are doubled
on the way out and undoubled on the way in by telnetlib3 itself.

Where BINARY is not in force for a direction, the bytes follow the NVT rules
of RFC 854: a CR alone goes out as CR NUL, and NUL from the server, a no-op
in the NVT, is dropped, so CR NUL reaches the browser as a bare CR. That is
most of the time with inetutils telnetd: it mirrors the pty's termios in
BINARY and says WONT BINARY for its output while OPOST is on, then sends
`\r\0`. (xterm.js would ignore the NULs; dropping them keeps the stream
clean for anything else that reads it.) Binary data, either way, passes
untouched.

Telnet's Synch (RFC 854) sends its IAC as TCP urgent data: telnetd does so
after an interrupt flushed output. Whoever holds the TCP socket (the agent)
must keep urgent data inline (SO_OOBINLINE), or the IAC is lost and a bare
DM byte (0xF2) reaches the terminal; the bridge cannot tell it from data.

The bridge closes the stream when it is done (closing twice is harmless).
"""

import asyncio
import collections
import re
from dataclasses import dataclass
from typing import Any

import telnetlib3
from telnetlib3.telopt import BINARY, ECHO, LINEMODE, NAWS, SGA

from sessions.bridges.base import BridgeResult, ByteStream, Input, Output, Resize, Status
from sessions.bridges.transport import CHUNK, StreamTransport

SERVER_CLOSED = "the Telnet server closed the connection"
BROWSER_CLOSED = "closed in the browser"
TIMED_OUT = "timed out waiting for the Telnet server"

_LONE_CR = re.compile(rb"\r(?!\n)")


@dataclass(frozen=True)
class TelnetOptions:
    term: str = "xterm-256color"
    cols: int = 80
    rows: int = 24
    connect_timeout: float = 30.0


class TerminalWriter(telnetlib3.TelnetWriter):
    """telnetlib3's writer, which also parses what the server sends."""

    def handle_subnegotiation(self, buf: collections.deque[bytes]) -> None:
        # telnetlib3 acts on any subnegotiation, asked for or not: a stray
        # IAC SB MCCP2 IAC SE would make it inflate all later output, which
        # is then lost. RFC 855 allows one only for an option in force.
        option = buf[0] if buf else b""
        if not (self.local_option.enabled(option) or self.remote_option.enabled(option)):
            self.log.debug("ignored a subnegotiation for option %r, not in force", option)
            return
        try:
            super().handle_subnegotiation(buf)
        except Exception as exc:
            # Its parsers raise whatever a short or garbled payload makes them
            # (struct.error, IndexError, ...), which the caller would log as a
            # traceback: a server could fill the log with them.
            self.log.debug("ignored a malformed subnegotiation for option %r: %r", option, exc)


class TerminalClient(telnetlib3.TelnetClient):
    """telnetlib3's client, set up as a terminal for a person at xterm.js."""

    _writer_factory = TerminalWriter

    def __init__(self, **kwargs: Any) -> None:
        # MCCP would let the server switch either direction to zlib; no
        # device's telnetd speaks it.
        super().__init__(compression=False, **kwargs)

    def connection_lost(self, exc: Exception | None) -> None:
        # telnetlib3 parses received bytes in a task of its own and drops what
        # that task has not reached when the connection ends: the server's
        # last words before it hangs up ("Login incorrect") would be lost.
        if not self._closing:
            while self._rx_queue:
                chunk = self._rx_queue.popleft()
                self._rx_bytes -= len(chunk)
                self._process_chunk(chunk)
        super().connection_lost(exc)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        writer = self.writer
        assert writer is not None
        writer.always_will.add(BINARY)
        writer.always_do.update((BINARY, SGA, ECHO))
        writer.always_wont.add(LINEMODE)
        # Do not scan every incoming byte for special line characters: in
        # character mode the server's pty handles them, not us.
        writer.slc_simulated = False

    def resize(self, cols: int, rows: int) -> None:
        """Tell the server the new window size, once NAWS is agreed (until
        then the size is kept for when the server asks)."""
        self._extra["cols"], self._extra["rows"] = cols, rows
        writer = self.writer
        if writer is not None and not writer.is_closing() and writer.local_option.enabled(NAWS):
            writer._send_naws()  # telnetlib3 has no public call for this

    def send(self, data: bytes) -> None:
        writer = self.writer
        assert writer is not None
        if not writer.outbinary:
            data = _LONE_CR.sub(b"\r\0", data)
        writer.write(data)


async def run_telnet(
    stream: ByteStream, options: TelnetOptions, events: asyncio.Queue, output: Output, status: Status
) -> BridgeResult:
    client = TerminalClient(
        term=options.term,
        cols=options.cols,
        rows=options.rows,
        encoding=False,
        # LANG would say "C" with encoding=False; leave the server's own.
        send_environ=("TERM", "COLUMNS", "LINES"),
    )
    transport = StreamTransport(stream, client)
    transport.start()
    # Each task returns None when its part is over and the session goes on,
    # or the BridgeResult that ends it.
    pending = {
        asyncio.create_task(_answered(transport, status, options.connect_timeout)),
        asyncio.create_task(_to_server(client, events)),
        asyncio.create_task(_to_browser(client, output)),
    }
    try:
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                result = task.result()
                if result is not None:
                    return result
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if client.writer is not None:
            client.writer.close()
        await transport.finish()


async def _answered(transport: StreamTransport, status: Status, timeout: float) -> BridgeResult | None:
    try:
        await asyncio.wait_for(transport.answered.wait(), timeout)
    except TimeoutError:
        return BridgeResult(TIMED_OUT, failed=True)
    await status("connected", "")
    return None


async def _to_server(client: TerminalClient, events: asyncio.Queue) -> BridgeResult:
    assert client.writer is not None
    while True:
        event = await events.get()
        if event is None:
            return BridgeResult(BROWSER_CLOSED)
        if isinstance(event, Resize):
            client.resize(event.cols, event.rows)
        elif isinstance(event, Input) and event.data:
            client.send(event.data)
            await client.writer.drain()


async def _to_browser(client: TerminalClient, output: Output) -> BridgeResult:
    reader, writer = client.reader, client.writer
    assert reader is not None and writer is not None
    while data := await reader.read(CHUNK):
        if not writer.inbinary:
            # NVT: NUL is a no-op, and CR NUL a bare CR.
            data = data.replace(b"\0", b"")
        if data:
            await output(data)
    return BridgeResult(SERVER_CLOSED)
