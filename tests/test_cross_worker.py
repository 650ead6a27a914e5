"""Two gateway workers sharing a real redis-server: the client's WebSocket
on one, the device's control channel and tunnel on the other."""

import base64
import os
import urllib.error
import urllib.request

import pytest
from django.contrib.auth.models import User
from guardian.shortcuts import assign_perm
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from endpoints.models import Device, Endpoint, Protocol
from portal.models import ApiToken
from portal.throttle import LOGIN
from sessions.models import Operation, Status
from sessions.relay import RELAY_FAILED
from tests.live import (
    Agent,
    EchoServer,
    Gateway,
    RedisServer,
    live_database,
    printed_log,
    send_while_receiving,
    wait_until,
)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def redis():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker, redis):
    with live_database(django_db_blocker):
        first = Gateway(REDIS_URL=redis.url).start()
        second = Gateway(REDIS_URL=redis.url).start()
        yield first, second
        first.stop()
        second.stop()


@pytest.fixture(autouse=True)
def worker_logs(workers):
    """The workers' log lines of this test, shown when it fails."""
    with printed_log(*workers):
        yield


@pytest.fixture
def device(workers, tmp_path):
    """A device whose agent is on the second worker, with a passthrough
    endpoint to an echo target, and a token of a user who may use it;
    the records are unique to each test."""
    echo = EchoServer()
    serial = f"gw-{tmp_path.name[-20:]}"
    device = Device.objects.create(serial=serial, name="Cross")
    user = User.objects.create_user(f"tech-{serial}", password="tech-pass-1")
    assign_perm("remote_access_read", user, device)
    endpoint = Endpoint.objects.create(
        device=device, name="Echo", protocol=Protocol.PASSTHROUGH, hostname="127.0.0.1", port=echo.port
    )
    agent = Agent(tmp_path, workers[1].url, device).start()
    try:
        agent.wait_online()
        yield {"device": device, "endpoint": endpoint, "token": ApiToken.issue(user, "cli")[1]}
    finally:
        agent.stop()
        echo.stop()


def open_session(client_worker: Gateway, device: dict, **options):
    url = (f"{client_worker.ws_url}/service/remoteaccess/client/{device['device'].pk}"
           f"/configurations/{device['endpoint'].pk}")
    return connect(url, additional_headers={"Authorization": f"Bearer {device['token']}"}, open_timeout=10,
                   **options)


def test_ten_mib_cross_workers_intact_and_in_order(workers, device):
    client_worker, device_worker = workers
    payload = os.urandom(10 * MIB)
    with open_session(client_worker, device, max_size=2 * MIB) as ws:
        received = send_while_receiving(ws, payload, timeout=30)
    assert received == payload
    tunnel_lines = [line for line in device_worker.output.lines if "/service/remoteaccess/device/" in line]
    assert tunnel_lines, "the tunnel landed on the device's worker"
    operation = Operation.objects.filter(endpoint=device["endpoint"])
    wait_until(lambda: operation.get().bytes_from_device == len(payload), 10, "both sides' byte counts")
    record = operation.get()
    assert record.status == Status.SUCCESSFUL
    assert record.bytes_to_device == record.bytes_from_device == len(payload)


def get_status(url: str, authorization: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_a_lock_out_earned_on_one_worker_holds_on_the_other(workers):
    first, second = workers
    User.objects.create_user("guessed", password="right-pass-1")
    url = "/service/remoteaccess/devices/1/configurations"
    wrong = "Basic " + base64.b64encode(b"guessed:wrong").decode()
    right = "Basic " + base64.b64encode(b"guessed:right-pass-1").decode()
    for _ in range(LOGIN.max_failures):
        assert get_status(first.url + url, wrong) == 401
    assert get_status(second.url + url, right) == 429


def test_a_redis_restart_ends_live_sessions_with_a_reason_and_new_ones_work(workers, redis, device):
    """Last in this module: it restarts the shared redis-server."""
    client_worker = workers[0]
    with open_session(client_worker, device) as ws:
        ws.send(b"before")
        assert ws.recv(timeout=30) == b"before"
        redis.stop()
        with pytest.raises(ConnectionClosed) as closed:
            # Bytes sent now cannot cross; the session must end, not hang.
            ws.send(b"during")
            ws.recv(timeout=60)
        assert closed.value.rcvd is not None, "the gateway closed the session with a close frame"
        assert closed.value.rcvd.code == RELAY_FAILED
    redis.start()
    operation = Operation.objects.filter(endpoint=device["endpoint"])
    wait_until(lambda: operation.get().ended is not None, 30, "the audit of the broken session")
    assert "Redis" in operation.get().end_reason

    # The device's control channel may have been lost with Redis; the agent
    # reconnects on its own and a new session works.
    def new_session_echoes() -> bool:
        try:
            with open_session(client_worker, device) as ws:
                ws.send(b"after")
                return ws.recv(timeout=15) == b"after"
        except (ConnectionClosed, InvalidStatus, TimeoutError):
            return False

    wait_until(new_session_echoes, 90, "a new session once Redis is back")
