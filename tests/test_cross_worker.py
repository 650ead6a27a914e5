"""Two daphne workers sharing a real redis-server: the client's WebSocket on
one, the device's control channel and tunnel on the other."""

import os
import threading

import pytest
from django.contrib.auth.models import User
from guardian.shortcuts import assign_perm
from websockets.sync.client import connect

from endpoints.models import Device, Endpoint, Protocol
from portal.models import ApiToken
from sessions.models import Operation, Status
from tests.live import Agent, EchoServer, Gateway, live_database, printed_log, redis_server, wait_until

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with live_database(django_db_blocker), redis_server() as redis_url:
        first = Gateway(REDIS_URL=redis_url).start()
        second = Gateway(REDIS_URL=redis_url).start()
        yield first, second
        first.stop()
        second.stop()


@pytest.fixture(autouse=True)
def worker_logs(workers):
    """The workers' log lines of this test, shown when it fails."""
    with printed_log(*workers):
        yield


def test_ten_mib_cross_workers_intact_and_in_order(workers, tmp_path):
    client_worker, device_worker = workers
    echo = EchoServer()
    device = Device.objects.create(serial="gw-x", name="Cross")
    user = User.objects.create_user("tech", password="tech-pass-1")
    assign_perm("remote_access_read", user, device)
    endpoint = Endpoint.objects.create(
        device=device, name="Echo", protocol=Protocol.PASSTHROUGH, hostname="127.0.0.1", port=echo.port
    )
    token = ApiToken.issue(user, "cli")[1]
    agent = Agent(tmp_path, device_worker.url, device).start()
    try:
        agent.wait_online()
        url = f"{client_worker.ws_url}/service/remoteaccess/client/{device.pk}/configurations/{endpoint.pk}"
        payload = os.urandom(10 * MIB)
        received = bytearray()
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=2 * MIB,
                     open_timeout=10) as ws:

            def send_all() -> None:
                for start in range(0, len(payload), 64 * 1024):
                    ws.send(payload[start : start + 64 * 1024])

            sender = threading.Thread(target=send_all)
            sender.start()
            while len(received) < len(payload):
                received += ws.recv(timeout=30)
            sender.join(30)
        assert bytes(received) == payload
        tunnel_lines = [line for line in device_worker.output.lines if "/service/remoteaccess/device/" in line]
        assert tunnel_lines, "the tunnel landed on the device's worker"
        wait_until(lambda: Operation.objects.get().bytes_from_device == len(payload), 10,
                   "both sides' byte counts")
        record = Operation.objects.get()
        assert record.status == Status.SUCCESSFUL
        assert record.bytes_to_device == record.bytes_from_device == len(payload)
    finally:
        agent.stop()
        echo.stop()
