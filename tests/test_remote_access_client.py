"""remote-access-client with real processes on loopback: the gateway, the
real agent, a TCP echo target and a real sshd, and OpenSSH's ssh
and scp on the technician's side.

What a refused tunnel does to `server`: the server refused the credentials
or the endpoint, which no later connection can change, so the TCP client is
closed, the error is logged in one line and the proxy exits with 1. A server
that cannot be reached closes only that TCP client; the proxy keeps
listening.
"""

import hashlib
import http.server
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from guardian.shortcuts import assign_perm

from agent.client.config import ClientConfig, save_config
from endpoints.models import Device, Endpoint, Protocol
from portal.models import ApiToken
from sessions.models import Operation
from tests.live import Agent, EchoServer, LineReader, free_port, wait_until
from tests.sshd import Sshd, keygen

CLIENT = str(Path(sys.executable).with_name("remote-access-client"))
MIB = 1024 * 1024
WAIT = 20
# Loopback traffic must not go through a proxy from the developer's shell.
ENV = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}

pytestmark = pytest.mark.usefixtures("gateway_log")


@pytest.fixture(scope="module")
def echo():
    server = EchoServer()
    yield server
    server.stop()


@dataclass
class World:
    device: Device
    user: User
    token: str
    endpoint: Endpoint
    folder: Path
    config: Path  # the client's configuration file, with the user's token


@pytest.fixture(scope="module")
def world(gateway, echo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("client")
    device = Device.objects.create(serial="gw-client", name="Client gateway")
    user = User.objects.create_user("tech", password="tech-pass-1")
    assign_perm("remote_access_read", user, device)
    endpoint = Endpoint.objects.create(
        device=device, name="Echo", protocol=Protocol.PASSTHROUGH, hostname="127.0.0.1", port=echo.port
    )
    token = ApiToken.issue(user, "cli")[1]
    config = folder / "client.toml"
    save_config(ClientConfig(server=gateway.url, token=token), config)
    agent = Agent(folder, gateway.url, device).start()
    agent.wait_online()
    yield World(device, user, token, endpoint, folder, config)
    agent.stop()


class Client:
    """A `remote-access-client` process; its stderr collected line by line."""

    def __init__(self, *args: str, stdin: int | None = subprocess.DEVNULL) -> None:
        self.process = subprocess.Popen([CLIENT, *args], stdin=stdin, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=ENV)
        self.log = LineReader(self.process.stderr)

    def port(self) -> int:
        line = self.log.wait_for(r"listening on 127\.0\.0\.1:\d+")
        return int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))

    def stop(self) -> int:
        """Stop it (SIGTERM) and show its log, for when a test fails."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        print(f"{self.process.args[1]} exited with {self.process.returncode}:", *self.log.lines, sep="\n  ")
        return self.process.returncode


def serve(world: World, endpoint: Endpoint, config: Path | None = None) -> Client:
    return Client("server", str(world.device.pk), "--config", str(endpoint.pk),
                  "--config-file", str(config or world.config))


@pytest.fixture(scope="module")
def proxy(world):
    client = serve(world, world.endpoint)
    client.listening = client.port()
    yield client
    client.stop()


def run(*args: str, timeout: float = WAIT, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout,
                          env=kwargs.pop("env", ENV), **kwargs)


def echo_through(port: int, payload: bytes) -> bytes:
    """Send ``payload`` to the proxy while reading back what the echo target returns."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        received = bytearray()
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sender.join(WAIT)
    return bytes(received)


def operations_of(endpoint: Endpoint) -> list[Operation]:
    return list(Operation.objects.filter(endpoint=endpoint).order_by("pk"))


def last_operation_ended(endpoint: Endpoint, after: int) -> bool:
    made = [op for op in operations_of(endpoint) if op.pk > after]
    return bool(made) and all(op.ended is not None for op in made)


def newest_pk() -> int:
    last = Operation.objects.order_by("-pk").first()
    return last.pk if last else 0


# login


def test_login_stores_the_server_and_a_token_in_a_private_file(gateway, world, tmp_path):
    done = run(CLIENT, "login", "--server", gateway.url + "/", "--token", world.token,
               env={**ENV, "XDG_CONFIG_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    path = tmp_path / "remote-access-client" / "client.toml"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert f'token = "{world.token}"' in path.read_text()
    assert f'server = "{gateway.url}"' in path.read_text()
    assert f"saved to:    {path}" in done.stdout
    assert world.token not in done.stdout, "the token is shown only by its first characters"


def test_login_with_a_password_takes_it_from_the_environment(gateway, world, tmp_path):
    path = tmp_path / "elsewhere.toml"
    done = run(CLIENT, "login", "--server", gateway.url, "--user", "tech", "--config", str(path),
               env={**ENV, "REMOTE_ACCESS_PASSWORD": "tech-pass-1"})
    assert done.returncode == 0, done.stderr
    assert (path.stat().st_mode & 0o777) == 0o600
    assert 'username = "tech"' in path.read_text() and 'password = "tech-pass-1"' in path.read_text()


def test_login_with_a_wrong_token_is_refused_and_saves_nothing(gateway, tmp_path):
    path = tmp_path / "client.toml"
    done = run(CLIENT, "login", "--server", gateway.url, "--token", "rag_wrong", "--config", str(path))
    assert done.returncode == 1
    assert done.stderr.strip() == "remote-access-client: error: the server refused these credentials"
    assert not path.exists()


def test_login_to_a_server_that_does_not_answer_saves_nothing(tmp_path):
    port = free_port()
    path = tmp_path / "client.toml"
    done = run(CLIENT, "login", "--server", f"http://127.0.0.1:{port}", "--token", "rag_x", "--config", str(path))
    assert done.returncode == 1
    assert f"cannot reach the server at http://127.0.0.1:{port}: connection refused" in done.stderr
    assert not path.exists()


# server: TCP clients, each with its own tunnel


def test_two_clients_at_once_each_get_their_own_mebibyte_back(world, proxy):
    before = newest_pk()
    payloads = [os.urandom(MIB), os.urandom(MIB)]
    results: dict[int, bytes] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, echo_through(proxy.listening, payloads[i])))
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert results[0] == payloads[0]
    assert results[1] == payloads[1]
    wait_until(lambda: last_operation_ended(world.endpoint, before), 10, "both operations' end")
    made = [op for op in operations_of(world.endpoint) if op.pk > before]
    assert len(made) == 2, "one tunnel (and operation) per TCP client"
    assert sorted(op.bytes_to_device for op in made) == [MIB, MIB]


def test_a_client_closing_ends_its_tunnel_and_the_proxy_serves_the_next(world, proxy, echo):
    for round_trip in range(3):
        before = newest_pk()
        echo.closed.clear()
        assert echo_through(proxy.listening, b"ping %d" % round_trip) == b"ping %d" % round_trip
        assert echo.closed.wait(5), "the target's connection was closed"
        wait_until(lambda before=before: last_operation_ended(world.endpoint, before), 10, "the operation's end")
    assert proxy.process.poll() is None


def test_a_dropped_tunnel_ends_only_its_own_client(world, proxy, echo):
    first = socket.create_connection(("127.0.0.1", proxy.listening), timeout=WAIT)
    first.sendall(b"one")
    assert first.recv(16) == b"one"
    dropped = echo.writers[-1]
    second = socket.create_connection(("127.0.0.1", proxy.listening), timeout=WAIT)
    second.sendall(b"two")
    assert second.recv(16) == b"two"
    with first, second:
        echo.loop.call_soon_threadsafe(dropped.close)
        first.settimeout(5)
        assert first.recv(16) == b"", "the first client's connection was closed"
        second.sendall(b"still here")
        assert second.recv(16) == b"still here"
    assert echo_through(proxy.listening, b"a new one") == b"a new one"
    proxy.log.wait_for(r"connection \d+ ended: the remote side closed the connection")


def test_a_wrong_token_closes_the_client_and_stops_the_proxy_with_a_clear_error(gateway, world):
    config = world.folder / "wrong-token.toml"
    save_config(ClientConfig(server=gateway.url, token="rag_wrong"), config)
    client = serve(world, world.endpoint, config)
    try:
        with socket.create_connection(("127.0.0.1", client.port()), timeout=WAIT) as sock:
            assert sock.recv(16) == b""
        assert client.process.wait(timeout=WAIT) == 1
        client.log.wait_for(r"error: .*the server refused your credentials: run `remote-access-client login` again")
    finally:
        client.stop()


def test_a_user_without_access_is_told_so(gateway, world):
    outsider = User.objects.create_user("outsider", password="x-pass-1234")
    config = world.folder / "outsider.toml"
    save_config(ClientConfig(server=gateway.url, token=ApiToken.issue(outsider, "cli")[1]), config)
    done = run(CLIENT, "server", str(world.device.pk), "--config", str(world.endpoint.pk), "--stdio",
               "--config-file", str(config))
    assert done.returncode == 1
    assert "no such device or endpoint, or you have no access to it" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    # `connect ssh` opens its tunnel first, and runs no ssh when it is refused.
    done = run(CLIENT, "connect", "ssh", str(world.device.pk), "--config", str(world.endpoint.pk), "--user", "x",
               "--config-file", str(config), "-o", "BatchMode=yes")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "remote-access-client: error: no such device or endpoint, or you have no access to it"
    )


def test_an_unreachable_server_is_named(world):
    port = free_port()
    config = world.folder / "nowhere.toml"
    save_config(ClientConfig(server=f"http://127.0.0.1:{port}", token=world.token), config)
    done = run(CLIENT, "server", str(world.device.pk), "--config", str(world.endpoint.pk), "--stdio",
               "--config-file", str(config))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"remote-access-client: error: cannot reach the server at http://127.0.0.1:{port}: connection refused"
    )


def test_a_serial_and_an_endpoint_name_are_looked_up(world):
    client = stdio_client(world, world.device.serial, "echo")
    try:
        assert stdio_round_trip(client, b"by name") == b"by name"
    finally:
        client.stop()


def test_an_endpoint_that_is_not_passthrough_is_named(world):
    Endpoint.objects.get_or_create(device=world.device, name="Shell", protocol=Protocol.SSH, hostname="127.0.0.1",
                                   port=22, username="root")
    done = run(CLIENT, "server", str(world.device.pk), "--config", "Shell", "--config-file", str(world.config))
    assert done.returncode == 1
    assert "is not a PASSTHROUGH endpoint" in done.stderr and "'Shell'" in done.stderr


@pytest.fixture
def server_without_apis(tmp_path):
    """An HTTP server that knows nothing: 404 for everything."""
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    config = tmp_path / "client.toml"
    save_config(ClientConfig(server=f"http://127.0.0.1:{httpd.server_address[1]}", token="rag_x"), config)
    yield config
    httpd.shutdown()
    httpd.server_close()


def test_names_on_a_server_without_the_apis_ask_for_ids(server_without_apis):
    done = run(CLIENT, "server", "gw-client", "--config", "3", "--config-file", str(server_without_apis))
    assert done.returncode == 1
    assert "the server does not offer the identity API: pass the device's numeric id" in done.stderr
    done = run(CLIENT, "server", "5", "--config", "Echo", "--config-file", str(server_without_apis))
    assert done.returncode == 1
    assert "the server does not offer the configurations API: pass the endpoint's numeric id" in done.stderr


# server --stdio


def stdio_client(world: World, device: str, config: str) -> Client:
    return Client("server", device, "--config", config, "--stdio", "--config-file", str(world.config),
                  stdin=subprocess.PIPE)


def stdio_round_trip(client: Client, payload: bytes) -> bytes:
    """Write ``payload`` to the client's stdin and read as much back from its
    stdout, both in threads so that every wait is bounded; stdin stays open
    (closing it ends the tunnel)."""
    received = bytearray()

    def feed() -> None:
        client.process.stdin.write(payload)
        client.process.stdin.flush()

    def collect() -> None:
        while len(received) < len(payload) and (chunk := client.process.stdout.read1(65536)):
            received.extend(chunk)

    threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=collect, daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    return bytes(received)


def test_stdio_relays_bytes_and_ends_with_stdin(world):
    before = newest_pk()
    payload = os.urandom(256 * 1024)
    client = stdio_client(world, str(world.device.pk), str(world.endpoint.pk))
    try:
        assert stdio_round_trip(client, payload) == payload
        client.process.stdin.close()
        assert client.process.wait(timeout=WAIT) == 0
        wait_until(lambda: last_operation_ended(world.endpoint, before), 10, "the operation's end")
    finally:
        client.stop()


# ssh and scp through the proxy, to a real sshd


@pytest.fixture(scope="module")
def sshd():
    with Sshd() as server:
        yield server


@dataclass
class SshSetup:
    endpoint: Endpoint
    user: str
    key: Path
    proxy: Client

    @property
    def options(self) -> list[str]:
        return ["-F", "/dev/null", *self.client_options]

    @property
    def client_options(self) -> list[str]:
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]


@pytest.fixture(scope="module")
def ssh_setup(world, sshd, tmp_path_factory):
    key = tmp_path_factory.mktemp("ssh-key") / "id_ed25519"
    _, public = keygen(key, "ed25519")
    sshd.authorize(public)
    endpoint = Endpoint.objects.create(
        device=world.device, name="sshd", protocol=Protocol.PASSTHROUGH, hostname=sshd.host, port=sshd.port
    )
    client = serve(world, endpoint)
    client.listening = client.port()
    yield SshSetup(endpoint, sshd.user, key, client)
    client.stop()


def test_ssh_runs_a_command_through_the_proxy(ssh_setup):
    done = run("ssh", "-p", str(ssh_setup.proxy.listening), *ssh_setup.options, f"{ssh_setup.user}@127.0.0.1",
               "echo ok")
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


def test_ssh_runs_a_command_with_stdio_as_its_proxy_command(world, ssh_setup):
    command = shlex.join([CLIENT, "server", str(world.device.pk), "--config", str(ssh_setup.endpoint.pk),
                          "--stdio", "--config-file", str(world.config)])
    done = run("ssh", *ssh_setup.options, "-o", f"ProxyCommand={command}", f"{ssh_setup.user}@device", "echo ok")
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


def test_connect_ssh_runs_ssh_and_exits_with_its_code(world, ssh_setup):
    done = run(CLIENT, "connect", "ssh", str(world.device.pk), "--config", str(ssh_setup.endpoint.pk),
               "--user", ssh_setup.user, "--config-file", str(world.config),
               *ssh_setup.client_options,
               "--", "echo ok; exit 3")
    assert (done.returncode, done.stdout) == (3, "ok\n"), done.stderr


def test_a_five_mib_scp_upload_arrives_intact(ssh_setup, tmp_path):
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(5 * MIB))
    remote = Path(f"/tmp/ra-client-upload-{secrets.token_hex(6)}")
    try:
        # -O: the SCP protocol (the test sshd has no sftp subsystem).
        done = run("scp", "-O", "-P", str(ssh_setup.proxy.listening), *ssh_setup.options, str(upload),
                   f"{ssh_setup.user}@127.0.0.1:{remote}", timeout=60)
        assert done.returncode == 0, done.stderr
        assert hashlib.sha256(remote.read_bytes()).hexdigest() == hashlib.sha256(upload.read_bytes()).hexdigest()
    finally:
        remote.unlink(missing_ok=True)
