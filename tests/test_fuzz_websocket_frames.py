"""WebSocket frames of every size and kind, well-formed or not, written by
hand on raw sockets to every WebSocket endpoint of a real gateway, on each
server `manage.py serve` runs (daphne and uvicorn). Each ends the
connection, with the close code the contract gives, or the connection
carries on: a probe sent after it is answered by the application (the
control channel's ERR line, or the probe's bytes at the session's other
end). The worker stays up and serves a valid session afterwards, and
garbage on a control channel changes no operation."""

import base64
import os
import queue
import re
import select
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from guardian.shortcuts import assign_perm
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from endpoints.models import Device, Endpoint, Protocol
from portal.asgi_servers import MAX_MESSAGE, SERVERS
from portal.models import ApiToken
from sessions import operations
from sessions.models import Operation, Status
from sessions.relay import TEXT_FRAME
from tests.live import Gateway, live_gateway, printed_log, wait_until

WAIT = 10  # seconds for any one answer, far more than one takes
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NORMAL, NO_STATUS, PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1000, 1005, 1002, 1007, 1009
# daphne (autobahn, which fails a connection "by drop") answers a protocol
# error, text that is not UTF-8 and a message over the limit by closing the
# TCP connection without a close frame, as RFC 6455 7.1.7 allows; uvicorn
# sends the close code first.
DROPPED = "dropped"
ALIVE = "carries on"
# A text message ends the connection, or not, by the endpoint's contract
# (DESIGN.md): the control channel answers ERR, a device's text ends its
# tunnel, a local proxy may send binary only, the page ignores what is not
# its JSON.
AS_TEXT = {"control channel": ALIVE, "device tunnel": NORMAL, "passthrough client": TEXT_FRAME,
           "browser page": ALIVE}
PROBE = b"probe 5e1d"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True,
          length: int | None = None) -> bytes:
    """One frame as a client writes it; `length` may lie about the payload."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    mask = (key * (len(payload) // 4 + 1))[: len(payload)]
    return head + key + (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(payload), "big")


def close_frame(code: int | None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, (struct.pack("!H", code) if code is not None else b"") + reason)




@dataclass(frozen=True)
class Case:
    data: bytes
    outcome: object  # a close code, DROPPED, ALIVE or AS_TEXT
    relayed: bytes | None = None  # what the session's other end gets
    then_eof: bool = False  # the frame is cut short and the client hangs up
    daphne: object = None  # daphne's outcome where it differs otherwise than by dropping

    def expected(self, server: str, kind: str) -> object:
        outcome = self.daphne if server == "daphne" and self.daphne is not None else self.outcome
        if outcome is AS_TEXT:
            return AS_TEXT[kind]
        if server == "daphne" and outcome in (PROTOCOL_ERROR, INVALID_DATA, TOO_BIG):
            return DROPPED
        return outcome


def sized(opcode: int, size: int) -> Case:
    fill = (b"x" if opcode == TEXT else b"\xa5") * size
    if size > MAX_MESSAGE:
        return Case(frame(opcode, fill), TOO_BIG)
    return Case(frame(opcode, fill), AS_TEXT if opcode == TEXT else ALIVE, None if opcode == TEXT else fill)


SIZES = (0, 1, 125, 126, 127, 65535, 65536, MAX_MESSAGE, MAX_MESSAGE + 1)
CASES: dict[str, Case] = {
    **{f"binary {size}": sized(BINARY, size) for size in SIZES},
    **{f"text {size}": sized(TEXT, size) for size in SIZES},
    "fragmented binary with a ping between": Case(
        frame(BINARY, b"ab", fin=False) + frame(PING, b"p") + frame(CONTINUATION, b"cd", fin=False)
        + frame(CONTINUATION, b"ef"), ALIVE, b"abcdef"),
    "fragmented text with a pong between": Case(
        frame(TEXT, b"ab", fin=False) + frame(PONG, b"p") + frame(CONTINUATION, b"cd"), AS_TEXT),
    "fragments over the limit": Case(
        frame(BINARY, b"\xa5" * MAX_MESSAGE, fin=False) + frame(CONTINUATION, b"\xa5"), TOO_BIG),
    "a continuation with nothing to continue": Case(frame(CONTINUATION, b"ab"), PROTOCOL_ERROR),
    "a new message inside a fragmented one": Case(
        frame(BINARY, b"ab", fin=False) + frame(BINARY, b"cd"), PROTOCOL_ERROR),
    "a fragmented ping": Case(frame(PING, b"ab", fin=False) + frame(CONTINUATION, b"cd"), PROTOCOL_ERROR),
    "ping 0": Case(frame(PING), ALIVE),
    "ping 125": Case(frame(PING, b"p" * 125), ALIVE),
    "pong 125, unasked": Case(frame(PONG, b"p" * 125), ALIVE),
    "ping 126": Case(frame(PING, b"p" * 126), PROTOCOL_ERROR),
    **{f"opcode {opcode:#x}": Case(frame(opcode, b"ab"), PROTOCOL_ERROR) for opcode in (3, 7, 11, 15)},
    **{f"rsv {rsv}": Case(frame(BINARY, b"ab", rsv=rsv), PROTOCOL_ERROR) for rsv in (1, 4)},
    "unmasked binary": Case(frame(BINARY, b"ab", masked=False), PROTOCOL_ERROR),
    "unmasked close": Case(frame(CLOSE, struct.pack("!H", NORMAL), masked=False), PROTOCOL_ERROR),
    "text not utf-8": Case(frame(TEXT, b"ok \xc3\x28 \xff"), INVALID_DATA),
    "text with a surrogate": Case(frame(TEXT, b"\xed\xa0\x80"), INVALID_DATA),
    "fragmented text cut inside a character": Case(
        frame(TEXT, b"\xe2\x82", fin=False) + frame(CONTINUATION, b"x"), INVALID_DATA),
    # daphne answers every close with 1000; uvicorn echoes the code.
    "close without a code": Case(close_frame(None), NO_STATUS, daphne=NORMAL),
    **{f"close {code}": Case(close_frame(code), code, daphne=NORMAL) for code in (1000, 3000, 4999)},
    "close with one byte": Case(frame(CLOSE, b"\x03"), PROTOCOL_ERROR),
    **{f"close {code}": Case(close_frame(code), PROTOCOL_ERROR) for code in (999, 1005, 1006, 2999, 5000)},
    "close with a reason not utf-8": Case(close_frame(NORMAL, b"\xff\xfe"), INVALID_DATA),
    "length over 2**63": Case(frame(BINARY, length=1 << 63), TOO_BIG),
    "length over the limit, payload never sent": Case(frame(BINARY, length=1 << 40), TOO_BIG),
    # RFC 6455 asks for the shortest length; uvicorn takes a longer one too.
    "16-bit length for 5 bytes": Case(bytes([0x82, 0x80 | 126, 0, 5, 0, 0, 0, 0]) + b"hello", ALIVE, b"hello",
                                      daphne=DROPPED),
    "truncated header": Case(bytes([0x82]), DROPPED, then_eof=True),
    "truncated length": Case(bytes([0x82, 0x80 | 127, 0, 0]), DROPPED, then_eof=True),
    "truncated mask": Case(bytes([0x82, 0x85, 1, 2]), DROPPED, then_eof=True),
    "truncated payload": Case(frame(BINARY, b"hello")[:-2], DROPPED, then_eof=True),
}


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class RawWebSocket:
    """A client's WebSocket on a bare socket: the handshake, then frames
    written and read by hand."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 *(f"{name}: {value}" for name, value in headers.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buffer += data

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the server may close before it has read everything

    def hang_up(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def readable(self, timeout: float) -> bool:
        return bool(self.buffer) or bool(select.select([self.sock], [], [], timeout)[0])

    def read_frame(self) -> tuple[int, bytes] | None:
        """The next frame from the server, or None at the end of the stream."""
        try:
            first, second = self._take(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._take(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._take(8))[0]
            return first & 0x0F, self._take(size)
        except (EOFError, ConnectionError):
            return None

    def close(self) -> None:
        self.sock.close()


def connected(url: str, authorization: str) -> ClientConnection:
    """A valid WebSocket, open; its owner closes it."""
    return connect(url, additional_headers={"Authorization": authorization}, max_size=2 * MAX_MESSAGE,
                   open_timeout=WAIT).__enter__()


class Peer:
    """The valid other end of a session (a local proxy, or the device's
    tunnel), reading in a thread."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received = bytearray()
        self.got_probe = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.ws:
                if isinstance(message, bytes):
                    start = max(0, len(self.received) - len(PROBE))
                    self.received += message
                    if self.received.find(PROBE, start) != -1:
                        self.got_probe.set()
        except ConnectionClosed:
            pass

    def close(self) -> None:
        self.ws.close()


def outcome(raw: RawWebSocket, peer: Peer | None) -> object:
    """ALIVE once the probe got through, else the close code the server sent
    (1005 for none in its close frame), or DROPPED."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if peer is not None and peer.got_probe.is_set():
            return ALIVE
        if not raw.readable(timeout=0.05):
            continue
        got = raw.read_frame()
        if got is None:
            return DROPPED
        opcode, payload = got
        if opcode == CLOSE:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        if peer is None and opcode == TEXT and PROBE in payload:  # the control channel's ERR for it
            return ALIVE
    raise TimeoutError("neither the probe came through nor did the connection end")


class ControlChannel:
    """A device's control channel, valid, held for the whole module: it
    collects the connect requests (530 lines) the server sends down."""

    def __init__(self, gateway: Gateway, device: Device, token: str) -> None:
        self.ws = connected(f"{gateway.ws_url}/service/remoteaccess/agent", basic(device.username, token))
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.ws:
                self.lines.put(str(line))
        except ConnectionClosed:
            pass

    def connection_key(self) -> str:
        """The key of the next connect request."""
        return self.lines.get(timeout=WAIT).split(",")[4]

    def close(self) -> None:
        self.ws.close()


@dataclass
class World:
    server: str
    gateway: Gateway
    device: Device
    device_token: str
    quiet_device: Device
    quiet_token: str
    quiet_operation: Operation
    passthrough: Endpoint
    telnet: Endpoint
    api_token: str
    browser: Client
    control: ControlChannel


@pytest.fixture(scope="module", params=SERVERS)
def world(request, django_db_setup, django_db_blocker) -> Iterator[World]:
    with live_gateway(django_db_blocker, ASGI_SERVER=request.param) as gateway:
        device = Device.objects.create(serial="gw-fuzz", name="Fuzzed gateway")
        # The control channel fuzzed is this one's; its operation must not move.
        quiet_device = Device.objects.create(serial="gw-fuzz-quiet", name="Quiet gateway")
        tokens = [device.issue_token(), quiet_device.issue_token()]
        for each in (device, quiet_device):
            each.save(update_fields=["token_hash", "otp_hash", "otp_expires_at", "registered_at"])
        user = User.objects.create_user("tech", password="tech-pass-1")
        assign_perm("remote_access_read", user, device)
        # The device side of every session here is the test itself: no
        # target is ever reached.
        passthrough = Endpoint.objects.create(device=device, name="Raw", protocol=Protocol.PASSTHROUGH,
                                              hostname="127.0.0.1", port=9)
        telnet = Endpoint.objects.create(device=device, name="Console", protocol=Protocol.TELNET,
                                         hostname="127.0.0.1", port=9)
        quiet_endpoint = Endpoint.objects.create(device=quiet_device, name="Raw", protocol=Protocol.PASSTHROUGH,
                                                 hostname="127.0.0.1", port=9)
        Device.objects.filter(pk=quiet_device.pk).update(is_online=True, control_channel="fuzz")
        quiet_operation = operations.create(quiet_endpoint, user, None, "fuzz").operation
        browser = Client()
        browser.force_login(user)
        control = ControlChannel(gateway, device, tokens[0])
        try:
            yield World(request.param, gateway, device, tokens[0], quiet_device, tokens[1], quiet_operation, passthrough, telnet,
                        ApiToken.issue(user, "fuzz")[1], browser, control)
        finally:
            control.close()


@pytest.fixture(autouse=True)
def gateway_log(world):
    with printed_log(world.gateway):
        yield


def client_path(endpoint: Endpoint) -> str:
    return f"/service/remoteaccess/client/{endpoint.device_id}/configurations/{endpoint.pk}"


def open_client(world: World) -> ClientConnection:
    return connected(f"{world.gateway.ws_url}{client_path(world.passthrough)}", f"Bearer {world.api_token}")


def open_tunnel(world: World) -> ClientConnection:
    """The device's tunnel for the connect request just sent down."""
    return connected(f"{world.gateway.ws_url}/service/remoteaccess/device/{world.control.connection_key()}",
                     basic(world.device.username, world.device_token))


def open_endpoint(world: World, kind: str) -> tuple[RawWebSocket, Peer | None]:
    """A raw WebSocket to one kind of endpoint, accepted, and the valid
    other end of its session (the control channel has none)."""
    port = world.gateway.port
    if kind == "control channel":
        raw = RawWebSocket(port, "/service/remoteaccess/agent",
                           {"Authorization": basic(world.quiet_device.username, world.quiet_token)})
        return raw, None
    if kind == "device tunnel":
        peer = Peer(open_client(world))
        raw = RawWebSocket(port, f"/service/remoteaccess/device/{world.control.connection_key()}",
                           {"Authorization": basic(world.device.username, world.device_token)})
        return raw, peer
    if kind == "passthrough client":
        raw = RawWebSocket(port, client_path(world.passthrough), {"Authorization": f"Bearer {world.api_token}"})
    else:
        response = world.browser.post(f"/devices/{world.device.pk}/remote-access/{world.telnet.pk}/connect/")
        url = urlsplit(response.url)
        operation_id = url.path.strip("/").split("/")[-1]
        launch = parse_qs(url.query)["launch"][0]
        raw = RawWebSocket(port, f"/ws/sessions/{operation_id}/?launch={launch}",
                           {"Cookie": f"sessionid={world.browser.cookies['sessionid'].value}",
                            "Origin": world.gateway.url})
    return raw, Peer(open_tunnel(world))


ENDPOINTS = list(AS_TEXT)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("kind", ENDPOINTS)
def test_a_frame_ends_the_connection_cleanly_or_it_carries_on(world, kind, name):
    case = CASES[name]
    raw, peer = open_endpoint(world, kind)
    try:
        assert raw.status == 101
        raw.send(case.data)
        if case.then_eof:
            raw.hang_up()
        else:
            raw.send(frame(TEXT if peer is None else BINARY, PROBE))
        expected = case.expected(world.server, kind)
        assert outcome(raw, peer) == expected
        if expected == ALIVE and case.relayed is not None and peer is not None:
            if kind == "browser page":  # after the Telnet client's own negotiation
                assert case.relayed + PROBE in peer.received
            else:
                assert peer.received == case.relayed + PROBE
    finally:
        raw.close()
        if peer is not None:
            peer.close()
    assert world.gateway.process.poll() is None


HANDSHAKE_PATHS = [
    "/ws/nowhere/", "/ws/sessions/abc/", "/ws/sessions/99999999999999999999999999/", "/ws/sessions/1/?launch=%ff%fe",
    "/service/remoteaccess/device/" + "k" * 5000, "/service/remoteaccess/client/x/configurations/y",
    "/service/remoteaccess/client/99999999999999999999999/configurations/99999999999999999999999",
    "/service/remoteaccess/agent?%ff=%00",
]


@pytest.mark.parametrize("path", HANDSHAKE_PATHS)
def test_an_upgrade_to_any_path_is_refused_or_accepted_never_a_server_error(world, path):
    # uvicorn never answers a header line over 8 KiB (websockets' limit).
    for headers in ({}, {"Authorization": "Basic " + "A" * 8000},
                    # Not the device's: a control channel of its would replace the module's.
                    {"Authorization": basic(world.quiet_device.username, world.quiet_token)},
                    {"Authorization": f"Bearer {world.api_token}"},
                    {"Cookie": f"sessionid={world.browser.cookies['sessionid'].value}", "Origin": world.gateway.url}):
        raw = RawWebSocket(world.gateway.port, path, headers)
        raw.close()
        assert raw.status in (101, 401, 403, 404), headers  # daphne refuses every upgrade with 403
    assert world.gateway.process.poll() is None


def test_garbage_on_a_control_channel_changed_no_operation(world):
    operation = Operation.objects.get(pk=world.quiet_operation.pk)
    assert (operation.status, operation.failure_reason, operation.ended) == (Status.PENDING, "", None)


def test_the_worker_still_serves_pages_and_sessions_and_logged_no_error(world):
    with urllib.request.urlopen(f"{world.gateway.url}/accounts/login/", timeout=WAIT) as response:
        assert response.status == 200
    client = open_client(world)
    tunnel = open_tunnel(world)
    with client, tunnel:
        client.send(b"to the device")
        assert tunnel.recv(timeout=WAIT) == b"to the device"
        tunnel.send(b"to the client")
        assert client.recv(timeout=WAIT) == b"to the client"
    last = Operation.objects.filter(device=world.device).latest("pk")
    wait_until(lambda: Operation.objects.get(pk=last.pk).ended is not None, WAIT, "the session's end")
    assert Operation.objects.get(pk=last.pk).status == Status.SUCCESSFUL
    # Not every traceback: uvicorn logs one for each text that is not UTF-8.
    assert not [line for line in world.gateway.output.lines if re.search(
        r"Exception inside application|Exception in ASGI application|\" 500\b", line)]


