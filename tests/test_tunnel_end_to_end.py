"""The whole path with real processes: a local-proxy client's WebSocket →
the gateway → the device's tunnel → the real agent → a TCP target, and back."""

import os
import socket
import threading
import time

import pytest
from django.contrib.auth.models import User
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from endpoints.models import Device, Endpoint, Protocol
from portal.models import ApiToken
from sessions.models import Operation, Status
from tests.live import (
    Agent,
    EchoServer,
    Gateway,
    echo_round_trip,
    free_port,
    fresh_device,
    send_while_receiving,
    wait_until,
)

MIB = 1024 * 1024

pytestmark = pytest.mark.usefixtures("gateway_log")


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.stop()


@pytest.fixture
def setup(gateway, echo):
    device, user = fresh_device("gw-e2e", "E2E gateway")
    endpoint = Endpoint.objects.create(
        device=device, name="Echo", protocol=Protocol.PASSTHROUGH, hostname="127.0.0.1", port=echo.port
    )
    return {"device": device, "user": user, "endpoint": endpoint, "token": ApiToken.issue(user, "cli")[1]}


@pytest.fixture
def agent(setup, gateway, tmp_path):
    process = Agent(tmp_path, gateway.url, setup["device"]).start()
    process.wait_online()
    yield process
    process.stop()


def client_url(gateway, endpoint) -> str:
    return f"{gateway.ws_url}/service/remoteaccess/client/{endpoint.device_id}/configurations/{endpoint.pk}"


def open_client(gateway, setup, endpoint=None):
    return connect(
        client_url(gateway, endpoint or setup["endpoint"]),
        additional_headers={"Authorization": f"Bearer {setup['token']}"},
        subprotocols=["binary"],
        max_size=2 * MIB,
        open_timeout=10,
    )


def operation() -> Operation:
    return Operation.objects.get()


def wait_for_end(timeout: float = 10) -> Operation:
    wait_until(lambda: operation().ended is not None, timeout, "the operation's end")
    return operation()


def test_ten_mib_go_through_the_agent_and_back_intact(gateway, setup, agent):
    payload = os.urandom(10 * MIB)
    with open_client(gateway, setup) as ws:
        assert ws.subprotocol == "binary"
        received = send_while_receiving(ws, payload, timeout=20)
    assert received == payload
    wait_until(lambda: operation().bytes_from_device == len(payload), 10, "both sides' byte counts")
    record = wait_for_end()
    assert record.status == Status.SUCCESSFUL
    assert record.end_reason == "the client closed the connection"
    assert record.device_confirmed, "the agent's 506 (successful) report arrived"
    assert record.bytes_to_device == len(payload)
    assert record.bytes_from_device == len(payload)
    assert record.username == "tech" and record.client_address == "127.0.0.1"


def test_the_client_closing_closes_the_target(gateway, setup, agent, echo):
    with open_client(gateway, setup) as ws:
        echo_round_trip(ws)
    assert echo.closed.wait(10), "the target's connection was never closed"
    record = wait_for_end()
    assert record.status == Status.SUCCESSFUL


def test_the_target_closing_closes_the_client(gateway, setup, agent, echo):
    with open_client(gateway, setup) as ws:
        echo_round_trip(ws)
        echo.close_all()
        # A timeout instead would mean the client was left hanging.
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert wait_for_end().status == Status.SUCCESSFUL


def test_killing_the_agent_closes_the_client(gateway, setup, agent):
    with open_client(gateway, setup) as ws:
        echo_round_trip(ws)
        agent.kill()
        # A timeout instead would mean the client was left hanging.
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    record = wait_for_end()
    assert record.status == Status.SUCCESSFUL and record.ended is not None


def test_an_offline_device_fails_at_once(gateway, setup):
    with open_client(gateway, setup) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4001
    record = operation()
    assert (record.status, record.failure_reason) == (Status.FAILED, "device is offline")


def test_a_target_outside_the_allow_list_fails_with_the_agents_reason(gateway, setup, tmp_path):
    process = Agent(tmp_path, gateway.url, setup["device"], allow=["10.1.2.3:22"]).start()
    try:
        process.wait_online()
        with open_client(gateway, setup) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd.code == 4003
        record = operation()
        assert record.status == Status.FAILED
        assert record.failure_reason == "target not allowed by the agent's allow-list"
    finally:
        process.stop()


def test_a_refused_target_fails_with_the_agents_reason(gateway, setup, agent):
    port = free_port()
    endpoint = Endpoint.objects.create(
        device=setup["device"], name="Nothing", protocol=Protocol.PASSTHROUGH, hostname="127.0.0.1", port=port
    )
    with open_client(gateway, setup, endpoint) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)
    assert closed.value.rcvd.code == 4003
    record = Operation.objects.get(endpoint=endpoint)
    assert record.status == Status.FAILED
    assert record.failure_reason == f"connection refused by 127.0.0.1:{port}"


def test_a_user_without_read_is_refused(gateway, setup):
    outsider = User.objects.create_user("outsider", password="x-pass-1234")
    token = ApiToken.issue(outsider, "cli")[1]
    with pytest.raises(InvalidStatus) as refused:
        connect(client_url(gateway, setup["endpoint"]), additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=10)
    # Not 403: the device's existence stays hidden.
    assert refused.value.response.status_code == 404
    # Only the refusal's audit record.
    assert list(Operation.objects.values_list("username", "failure_reason")) == [
        ("outsider", "refused: no access to the device")]


def test_wrong_device_credentials_stop_the_agent_with_its_message(gateway, setup, tmp_path):
    process = Agent(tmp_path, gateway.url, setup["device"])
    Device.objects.filter(pk=setup["device"].pk).update(token_hash="0" * 64)
    process.start()
    try:
        process.output.wait_for("the device's credentials were refused: register again")
        assert process.process.wait(timeout=10) == 1
    finally:
        process.stop()


def test_the_agent_comes_back_after_a_server_restart_and_a_new_session_works(setup, tmp_path):
    server = Gateway().start()
    process = Agent(tmp_path, server.url, setup["device"]).start()
    try:
        process.wait_online()
        server.stop()
        process.output.wait_for("retry|reconnect", timeout=10)
        server = Gateway(port=server.port).start()
        process.wait_online(timeout=20)
        wait_until(lambda: Device.objects.get(pk=setup["device"].pk).is_online, 10, "the device online")
        with open_client(server, setup) as ws:
            echo_round_trip(ws, b"after restart")
    finally:
        process.stop()
        server.stop()


def test_a_restarted_server_closes_the_audit_of_the_sessions_it_held(setup, tmp_path):
    server = Gateway().start()
    process = Agent(tmp_path, server.url, setup["device"]).start()
    try:
        process.wait_online()
        ws = open_client(server, setup).__enter__()
        echo_round_trip(ws)
        assert operation().ended is None
        server.process.kill()
        server.process.wait(timeout=10)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        server = Gateway(port=server.port).start()
        server.output.wait_for("Closed the audit of 1 session", timeout=10)
        record = operation()
        assert record.ended is not None and record.end_reason == "server restarted"
        assert record.status == Status.SUCCESSFUL
        process.wait_online(timeout=30)
        with open_client(server, setup) as fresh:
            fresh.send(b"after the crash")
            assert fresh.recv(timeout=10) == b"after the crash"
    finally:
        process.stop()
        server.stop()


class SourceServer:
    """A TCP target that sends `size` random bytes to its first connection
    as fast as they are taken, then closes it; `done` is set once all is
    written."""

    def __init__(self, size: int) -> None:
        self.payload = os.urandom(size)
        self.done = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.sendall(self.payload)
            self.done.set()

    def close(self) -> None:
        self.listener.close()


SLOW_READER = 16 * MIB  # bytes per second


def test_a_slow_reader_gets_every_byte_after_the_target_has_closed(gateway, setup, agent):
    """The gateway slows the device down instead of buffering without bound,
    and what it holds still reaches the client when the target is done."""
    source = SourceServer(48 * MIB)
    endpoint = Endpoint.objects.create(
        device=setup["device"], name="Source", protocol=Protocol.PASSTHROUGH, hostname="127.0.0.1", port=source.port
    )
    received = bytearray()
    try:
        with open_client(gateway, setup, endpoint) as ws:
            # Not reading while the target writes: back-pressure stops it short
            # of the end, a server that buffers everything lets it finish.
            source.done.wait(timeout=2)
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received += ws.recv(timeout=30)
                    # A reader slower than the network: what the gateway
                    # still holds takes seconds to deliver after the close.
                    time.sleep(max(0.0, len(received) / SLOW_READER - (time.monotonic() - started)))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert len(received) == len(source.payload)
        assert bytes(received) == source.payload
    finally:
        source.close()
