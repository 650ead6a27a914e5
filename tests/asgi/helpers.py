"""Tools for the tests that drive the real ASGI application in-process with
channels' WebsocketCommunicator, playing the device (its control channel and
its tunnels) and the technician's local proxy (a passthrough client)."""

import asyncio
import base64
from dataclasses import dataclass
from typing import Any, Callable

from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from endpoints.models import Device, Endpoint, Protocol
from portal.asgi import application
from sessions import relay, smartrest
from sessions.models import Operation

# Every wait in these tests is bounded by this (seconds) unless it says otherwise.
WAIT = 2.0
# How long to watch for something that must not happen.
QUIET = 0.2

AGENT_PATH = "/service/remoteaccess/agent"


def tunnel_path(connection_key: str) -> str:
    return f"/service/remoteaccess/device/{connection_key}"


def client_path(device_id: object, endpoint_id: object) -> str:
    return f"/service/remoteaccess/client/{device_id}/configurations/{endpoint_id}"


def basic(username: str, password: str) -> tuple[bytes, bytes]:
    return b"authorization", b"Basic " + base64.b64encode(f"{username}:{password}".encode())


def bearer(token: str) -> tuple[bytes, bytes]:
    return b"authorization", f"Bearer {token}".encode()


def device_basic(device: Device, token: str, tenant: str = "") -> tuple[bytes, bytes]:
    prefix = f"{tenant}/" if tenant else ""
    return basic(f"{prefix}device_{device.serial}", token)


OPERATOR_PASSWORD = "operator-pass-1"  # the `operator` fixture's, in tests/conftest.py


def communicator(path: str, headers: list[tuple[bytes, bytes]] | None = None,
                 subprotocols: list[str] | None = None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=list(headers or []), subprotocols=subprotocols)


def reset_channel_layers() -> None:
    """A fresh in-memory layer (its queues belong to one event loop) and no
    client sides left waiting from another test."""
    channel_layers.backends.clear()
    relay.waiting.clear()


async def accepted(comm: WebsocketCommunicator) -> str | None:
    """Connect, which must be accepted; the subprotocol the server chose."""
    connected, subprotocol = await comm.connect(timeout=WAIT)
    assert connected, f"refused (close code {subprotocol})"
    return subprotocol


async def open_client(device: Device, endpoint: Endpoint, headers: list[tuple[bytes, bytes]] | None = None,
                      subprotocols: list[str] | None = None) -> WebsocketCommunicator:
    """A passthrough client, accepted; by default the `operator` with Basic auth."""
    comm = communicator(client_path(device.pk, endpoint.pk),
                        headers if headers is not None else [basic("operator", OPERATOR_PASSWORD)], subprotocols)
    await accepted(comm)
    return comm


async def is_refused(comm: WebsocketCommunicator) -> bool:
    connected, _ = await comm.connect(timeout=WAIT)
    return not connected


async def refusal_status(comm: WebsocketCommunicator) -> int:
    """The HTTP status of a refused upgrade, as a server with the ASGI
    denial-response extension (uvicorn, hypercorn) would send it."""
    comm.scope["extensions"] = {"websocket.http.response": {}}
    await comm.send_input({"type": "websocket.connect"})
    message = await comm.receive_output(timeout=WAIT)
    assert message["type"] == "websocket.http.response.start", message
    return message["status"]


async def close(comm: WebsocketCommunicator) -> None:
    """Disconnect and wait for the application to finish (it must, in time)."""
    if comm._future is None or comm.future.cancelled():
        return
    await comm.disconnect(timeout=WAIT)


async def close_all(*comms: WebsocketCommunicator) -> None:
    for comm in comms:
        await close(comm)


async def closed_with(comm: WebsocketCommunicator, timeout: float = WAIT) -> tuple[int, str]:
    """The next message must be the server closing the WebSocket: (code, reason)."""
    message = await comm.receive_output(timeout=timeout)
    assert message["type"] == "websocket.close", f"expected a close, got {message}"
    return message.get("code", 1000), message.get("reason", "")


async def frames_until_close(comm: WebsocketCommunicator, timeout: float = WAIT) -> tuple[list[Any], int]:
    """Every frame up to the server's close, and its close code."""
    frames = []
    while True:
        message = await comm.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            return frames, message.get("code", 1000)
        frames.append(message.get("bytes", message.get("text")))


async def receive_bytes(comm: WebsocketCommunicator, size: int, timeout: float = WAIT) -> list[bytes]:
    """Binary frames until `size` bytes have arrived."""
    frames: list[bytes] = []
    while sum(map(len, frames)) < size:
        frame = await comm.receive_from(timeout=timeout)
        assert isinstance(frame, bytes), f"expected a binary frame, got {frame!r}"
        frames.append(frame)
    return frames


@dataclass
class ConnectRequest:
    """A `530,<serial>,<hostname>,<port>,<connectionKey>,<operationId>` line."""

    line: str
    serial: str
    hostname: str
    port: int
    key: str
    operation_id: int

    @classmethod
    def parse(cls, line: str) -> "ConnectRequest":
        fields = smartrest.parse(line)
        assert fields[0] == "530" and len(fields) == 6, line
        return cls(line, fields[1], fields[2], int(fields[3]), fields[4], int(fields[5]))


async def connect_request(control: WebsocketCommunicator, timeout: float = WAIT) -> ConnectRequest:
    line = await control.receive_from(timeout=timeout)
    assert isinstance(line, str), line
    return ConnectRequest.parse(line)


async def the_one_error(control: WebsocketCommunicator) -> str:
    """Exactly one `ERR,<reason>` line comes back; its reason."""
    line = await control.receive_from(timeout=WAIT)
    assert isinstance(line, str), line
    fields = smartrest.parse(line)
    assert fields[0] == "ERR" and len(fields) == 2 and fields[1], line
    assert await control.receive_nothing(timeout=QUIET), "more than one answer"
    return fields[1]


async def no_answer(control: WebsocketCommunicator) -> None:
    assert await control.receive_nothing(timeout=QUIET), "the server answered a valid line"


@database_sync_to_async
def load_operation(pk: int) -> Operation:
    return Operation.objects.get(pk=pk)


@database_sync_to_async
def load_device(pk: int) -> Device:
    return Device.objects.get(pk=pk)


@database_sync_to_async
def operations_snapshot() -> list[dict[str, Any]]:
    return list(Operation.objects.order_by("pk").values())


async def operation_when(pk: int, predicate: Callable[[Operation], bool], timeout: float = WAIT) -> Operation:
    """The operation as soon as `predicate` holds for it (it must, in time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        operation = await load_operation(pk)
        if predicate(operation):
            return operation
        if loop.time() > deadline:
            raise AssertionError(
                f"operation {pk} stayed {operation.status} {operation.failure_reason!r} "
                f"(ended={operation.ended}, bytes {operation.bytes_to_device}/{operation.bytes_from_device})"
            )
        await asyncio.sleep(0.02)


@database_sync_to_async
def create_operation(endpoint: Endpoint, user: User, client_channel: str = "") -> tuple[int, str]:
    """A connect operation as the server makes it: (operation id, connection key)."""
    from sessions import operations

    new = operations.create(endpoint, user, None, client_channel)
    return new.operation.pk, new.connection_key


def make_passthrough_endpoint(device: Device, name: str = "Local proxy") -> Endpoint:
    return Endpoint.objects.create(
        device=device, name=name, protocol=Protocol.PASSTHROUGH, hostname="10.0.0.67", port=5900
    )


def issue_device_token(device: Device) -> str:
    token = device.issue_token()
    device.save()
    return token
