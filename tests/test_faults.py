"""Faults with real processes on loopback: the agent killed, the target or the
client gone, the network between agent and server stalled, the database
locked. After each, every side is closed, the audit says why in the words
the user read, and neither the gateway nor the agent keeps a socket, file
or thread that it did not have before the session.

The agent reaches the gateway through a proxy that can stall, and both ping
every PING seconds, so a silent peer is dropped within a few intervals.
"""

import contextlib
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.sync.client import ClientConnection, connect

from endpoints.models import CredentialsType, Device, Endpoint, Protocol
from portal.models import ApiToken
from sessions.bridges.ssh import BROWSER_CLOSED, CONNECTION_LOST, SHELL_EXITED
from sessions.models import Operation, Status
from tests.live import Agent, EchoServer, Gateway, echo_round_trip, fresh_device, live_gateway, wait_until
from tests.sshd import Sshd
from tests.stall_proxy import StallProxy
from tests.test_terminal_sessions import Page

PING = 5  # REMOTE_ACCESS_PING_INTERVAL's minimum
# Bounds on waits, not timings: a ping timeout plus ample room on a busy machine.
CLOSE_WAIT = 60
DEVICE_CLOSED = "the device closed the connection"
CLIENT_CLOSED = "the client closed the connection"
# How long the ends of sessions meet the database lock, at the least.
LOCK_HOLD = 3.0

pytestmark = pytest.mark.usefixtures("gateway_log")


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker):
    with live_gateway(django_db_blocker, REMOTE_ACCESS_PING_INTERVAL=str(PING)) as server:
        yield server


@pytest.fixture(scope="module")
def world(gateway):
    with Sshd() as sshd:
        proxy = StallProxy(gateway.port)
        echo = EchoServer()
        try:
            device, user = fresh_device("gw-faults", "Faults gateway")
            client = Client()
            client.force_login(user)
            yield {
                "gateway": gateway, "proxy": proxy, "echo": echo, "sshd": sshd, "device": device, "client": client,
                "token": ApiToken.issue(user, "cli")[1],
                "passthrough": Endpoint.objects.create(
                    device=device, name="Echo", protocol=Protocol.PASSTHROUGH, hostname="127.0.0.1", port=echo.port,
                ),
                "ssh": Endpoint.objects.create(
                    device=device, name="Shell", protocol=Protocol.SSH, hostname=sshd.host, port=sshd.port,
                    credentials_type=CredentialsType.USER_PASS, username=sshd.user, password=sshd.password,
                ),
            }
        finally:
            echo.stop()
            proxy.stop()


@pytest.fixture
def agent(world, tmp_path):
    """The agent, online through the proxy, after one session of each kind
    so that the thread pools they use exist before anything is counted."""
    process = Agent(tmp_path, world["proxy"].url, world["device"], ping_interval=PING).start()
    try:
        process.wait_online()
        with open_client(world) as ws:
            echo_round_trip(ws)
        page = Page(world, world["ssh"])
        page.wait_for_state("connected")
        page.close()
        wait_until(lambda: not Operation.objects.filter(ended__isnull=True).exists(), CLOSE_WAIT,
                   "the end of the warm-up sessions")
        yield process
    finally:
        process.stop()
        # Its control channel must be gone before the next test counts sockets.
        wait_until(lambda: not Device.objects.get(pk=world["device"].pk).is_online, CLOSE_WAIT,
                   "the device offline")


def open_client(world) -> ClientConnection:
    endpoint = world["passthrough"]
    return connect(
        f"{world['gateway'].ws_url}/service/remoteaccess/client/{endpoint.device_id}/configurations/{endpoint.pk}",
        additional_headers={"Authorization": f"Bearer {world['token']}"},
        subprotocols=["binary"],
        open_timeout=10,
    )


def close_of(ws: ClientConnection) -> Close:
    """The close frame the gateway sent, after whatever data came before it."""
    for _ in range(1000):
        try:
            ws.recv(timeout=CLOSE_WAIT)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the connection dropped without a close frame"
            return closed.rcvd
    raise AssertionError("no close frame after 1000 data frames")


def drop(ws: ClientConnection) -> None:
    """Gone without a close frame, as a closed tab or a dead laptop: the
    socket just ends."""
    ws.socket.shutdown(socket.SHUT_RDWR)
    ws.socket.close()


def newest_operation() -> Operation:
    return Operation.objects.order_by("-pk").first()


def ended(operation_id: int) -> Operation:
    wait_until(lambda: Operation.objects.get(pk=operation_id).ended is not None, CLOSE_WAIT, "the audit's end")
    return Operation.objects.get(pk=operation_id)


def shell_running(world, page: Page) -> str:
    """Once the shell answers: the port the agent connected to sshd from.
    Found by the newest shell, not the newest connection: another test's
    port probe may reach this sshd too."""
    page.wait_for_state("connected")
    page.type(b"echo $((6*7))\r")
    page.wait_for_output(rb"\b42\b")
    line = next(line for line in reversed(world["sshd"].log.lines) if line.startswith("Starting session: shell"))
    return line.split(" port ")[1].split()[0]


def wait_for_sshd_end(sshd: Sshd, port: str) -> None:
    """Until sshd's last words on the connection, whoever ended it."""
    def said() -> bool:
        return any(line.startswith(("Closing connection to", "Disconnected from", "Connection closed by",
                                    "Connection reset by")) for line in sshd.log_for(int(port)))

    try:
        wait_until(said, CLOSE_WAIT, "sshd's end of the connection")
    except TimeoutError:
        raise AssertionError(f"sshd still serves port {port}: {sshd.log_for(int(port))}") from None


@dataclass(frozen=True)
class Usage:
    files: int
    threads: int


def usage(pid: int) -> Usage:
    return Usage(len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task")))


class Leaks:
    """Open files (sockets included) and threads of processes, counted before
    a session, to check they come back down after it."""

    def __init__(self, *processes: Agent | Gateway) -> None:
        self.before = {process.process.pid: usage(process.process.pid) for process in processes}

    def grew(self) -> bool:
        """Does every process hold more open files now (a session's sockets)?"""
        return all(usage(pid).files > before.files for pid, before in self.before.items())

    def assert_none(self) -> None:
        for pid, before in self.before.items():
            def back(pid: int = pid, before: Usage = before) -> bool:
                now = usage(pid)
                return now.files <= before.files and now.threads <= before.threads

            try:
                wait_until(back, CLOSE_WAIT, "the return to the counts before the session")
            except TimeoutError:
                raise AssertionError(f"process {pid} holds {usage(pid)}, before the session {before}") from None


def test_killing_the_agent_closes_a_passthrough_session(world, agent):
    leaks = Leaks(world["gateway"])
    with open_client(world) as ws:
        echo_round_trip(ws)
        target = world["echo"].writers[-1]
        operation_id = newest_operation().pk
        agent.kill()
        closed = close_of(ws)
    assert closed.code == 1000
    wait_until(target.is_closing, CLOSE_WAIT, "the target's connection closed")
    record = ended(operation_id)
    assert (record.status, record.end_reason) == (Status.SUCCESSFUL, DEVICE_CLOSED)
    leaks.assert_none()


def test_killing_the_agent_closes_a_terminal_session(world, agent):
    leaks = Leaks(world["gateway"])
    page = Page(world, world["ssh"])
    port = shell_running(world, page)
    agent.kill()
    assert page.wait_for_state("disconnected", CLOSE_WAIT)["message"] == CONNECTION_LOST
    assert close_of(page.ws).code == 1000
    wait_for_sshd_end(world["sshd"], port)
    record = ended(page.operation_id)
    assert (record.status, record.end_reason) == (Status.SUCCESSFUL, CONNECTION_LOST)
    leaks.assert_none()


def test_the_target_closing_ends_a_passthrough_session(world, agent):
    leaks = Leaks(world["gateway"], agent)
    with open_client(world) as ws:
        echo_round_trip(ws)
        operation_id = newest_operation().pk
        world["echo"].close_all()
        closed = close_of(ws)
    assert closed.code == 1000
    record = ended(operation_id)
    assert (record.status, record.end_reason) == (Status.SUCCESSFUL, DEVICE_CLOSED)
    leaks.assert_none()


def test_the_shell_exiting_ends_a_terminal_session(world, agent):
    leaks = Leaks(world["gateway"], agent)
    page = Page(world, world["ssh"])
    port = shell_running(world, page)
    page.type(b"exit 3\r")
    message = page.wait_for_state("disconnected", CLOSE_WAIT)["message"]
    assert message == f"{SHELL_EXITED} (exit status 3)"
    assert close_of(page.ws).code == 1000
    wait_for_sshd_end(world["sshd"], port)
    record = ended(page.operation_id)
    assert (record.status, record.end_reason) == (Status.SUCCESSFUL, message)
    leaks.assert_none()


def test_a_closed_browser_tab_ends_a_terminal_session(world, agent):
    leaks = Leaks(world["gateway"], agent)
    page = Page(world, world["ssh"])
    port = shell_running(world, page)
    drop(page.ws)
    wait_for_sshd_end(world["sshd"], port)
    record = ended(page.operation_id)
    assert (record.status, record.end_reason) == (Status.SUCCESSFUL, BROWSER_CLOSED)
    leaks.assert_none()


def test_a_dropped_client_connection_ends_a_passthrough_session(world, agent):
    leaks = Leaks(world["gateway"], agent)
    with open_client(world) as ws:
        echo_round_trip(ws)
        target = world["echo"].writers[-1]
        operation_id = newest_operation().pk
        assert leaks.grew(), "the session's sockets are counted"
        drop(ws)
    wait_until(target.is_closing, CLOSE_WAIT, "the target's connection closed")
    record = ended(operation_id)
    assert (record.status, record.end_reason) == (Status.SUCCESSFUL, CLIENT_CLOSED)
    leaks.assert_none()


def test_a_stalled_network_ends_the_sessions_on_both_sides(world, agent):
    """Nothing closes a socket: only the pings find the silence."""
    leaks = Leaks(world["gateway"], agent)
    page = Page(world, world["ssh"])
    port = shell_running(world, page)
    with open_client(world) as ws:
        echo_round_trip(ws)
        target = world["echo"].writers[-1]
        operation_id = newest_operation().pk
        world["proxy"].pause()
        try:
            closed = close_of(ws)
            assert page.wait_for_state("disconnected", CLOSE_WAIT)["message"] == CONNECTION_LOST
            assert close_of(page.ws).code == 1000
            # The agent's own pings end its side: the targets are closed
            # while the network is still stalled.
            wait_until(target.is_closing, CLOSE_WAIT, "the target's connection closed")
            wait_for_sshd_end(world["sshd"], port)
        finally:
            world["proxy"].resume()
    assert closed.code == 1000
    assert ended(operation_id).end_reason == DEVICE_CLOSED
    assert ended(page.operation_id).end_reason == CONNECTION_LOST
    agent.wait_online(timeout=CLOSE_WAIT)
    leaks.assert_none()


@contextlib.contextmanager
def database_locked() -> Iterator[None]:
    """The test database under an exclusive lock: no other connection may
    read or write it until the block ends."""
    connection = sqlite3.connect(settings.DATABASES["default"]["NAME"], isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("COMMIT")
    finally:
        connection.close()


def test_sessions_relay_while_the_database_is_locked_and_their_audit_is_written_after(world, agent):
    gateway = world["gateway"]
    leaks = Leaks(gateway, agent)
    page = Page(world, world["ssh"])
    page.wait_for_state("connected")
    with open_client(world) as ws:
        echo_round_trip(ws)
        operation_id = newest_operation().pk
        with database_locked():
            for size in (1, 1000, 60_000):
                echo_round_trip(ws, os.urandom(size))
            page.type(b"echo $((6*7))\r")
            page.wait_for_output(rb"\b42\b")
            ws.close()
            page.type(b"exit\r")
            message = page.wait_for_state("disconnected", CLOSE_WAIT)["message"]
            assert message == f"{SHELL_EXITED} (exit status 0)"
            wait_until(lambda: all(any(f"operation {ended_id}: tunnel ended" in line for line in gateway.output.lines)
                                   for ended_id in (operation_id, page.operation_id)),
                       CLOSE_WAIT, "both tunnels' end")
            # The ends' audit writes now wait on the lock; let them meet it
            # for a while, as behind a long write elsewhere.
            threading.Event().wait(LOCK_HOLD)
    relayed = 4 + 1 + 1000 + 60_000
    # Each side writes its own byte count as it ends.
    wait_until(lambda: Operation.objects.get(pk=operation_id).bytes_from_device == relayed, CLOSE_WAIT,
               "the device side's byte count")
    wait_until(lambda: Operation.objects.get(pk=page.operation_id).bytes_to_device > 0, CLOSE_WAIT,
               "the terminal's byte count")
    client_end, page_end = ended(operation_id), ended(page.operation_id)
    assert (client_end.end_reason, client_end.bytes_to_device) == (CLIENT_CLOSED, relayed)
    assert page_end.end_reason == message
    leaks.assert_none()


def test_an_end_that_waits_out_the_database_timeout_is_still_recorded(world, agent):
    """A lock held past the database's own busy timeout (a backup, a long
    write elsewhere): the audit of a session that ended meanwhile is still
    written, both sides' byte counts included."""
    gateway = world["gateway"]
    with open_client(world) as ws:
        echo_round_trip(ws)
        operation_id = newest_operation().pk
        with database_locked():
            ws.close()
            wait_until(lambda: any(f"operation {operation_id}: tunnel ended" in line for line in gateway.output.lines),
                       CLOSE_WAIT, "the tunnel's end")
            # The fault itself: a lock that outlasts the gateway's busy timeout.
            threading.Event().wait(settings.SQLITE_OPTIONS["timeout"] + 3)
    wait_until(lambda: Operation.objects.get(pk=operation_id).bytes_from_device == 4, CLOSE_WAIT,
               "the device side's byte count")
    record = ended(operation_id)
    assert (record.end_reason, record.bytes_to_device) == (CLIENT_CLOSED, 4)
    assert not [line for line in gateway.output.lines if "Traceback" in line]
