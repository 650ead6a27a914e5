"""The world the terminal benchmark measures, all on loopback: a real OpenSSH
sshd (tests/sshd.py, as root, keys only), the gateway in the embedded mode,
the real agent of one device with an SSH endpoint to that sshd, a user with a
password who may use it, and the file that the output measurement cats."""

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.paths import MIB
from bench.world import BenchGateway, configure_django
from tests.live import Agent
from tests.sshd import Sshd, keygen

# Printable lines of one known length, so that the received byte count is
# known exactly: the PTY turns each "\n" into "\r\n".
LINE = (b"abcdefghijklmnopqrstuvwxyz0123456789" * 2)[:63] + b"\n"


@dataclass(frozen=True)
class TerminalWorld:
    gateway_url: str
    device_pk: int
    endpoint_pk: int
    username: str
    password: str
    sshd_host: str
    sshd_port: int
    sshd_user: str
    sshd_private_key: str
    sshd_host_key: str
    output_file: str
    output_size: int  # bytes in output_file

    @property
    def output_on_terminal(self) -> int:
        """Bytes that `cat output_file` puts on a terminal."""
        return self.output_size + self.output_size // len(LINE)


def write_output_file(stack: ExitStack, size_mib: int) -> str:
    """A file of size_mib MiB that the sshd's user can read."""
    handle, name = tempfile.mkstemp(prefix="bench-terminal-", suffix=".txt")
    stack.callback(os.unlink, name)
    block = LINE * (MIB // len(LINE))
    with os.fdopen(handle, "wb") as file:
        for _ in range(size_mib):
            file.write(block)
    os.chmod(name, 0o644)
    return name


def create_records(sshd: Sshd, private_key: str, username: str, password: str):
    """A user who may connect to a device with an SSH endpoint that logs in
    to sshd with the key, its host key pinned as after a first session;
    returns (device, endpoint)."""
    from django.contrib.auth.models import User
    from guardian.shortcuts import assign_perm

    from endpoints.models import CredentialsType, Device, Endpoint, Protocol

    user = User.objects.create_user(username, password=password)
    device = Device.objects.create(serial="bench-term", name="Bench terminal gateway")
    assign_perm("remote_access_read", user, device)
    endpoint = Endpoint.objects.create(
        device=device, name="Shell", protocol=Protocol.SSH, hostname=sshd.host, port=sshd.port,
        credentials_type=CredentialsType.KEY_PAIR, username=sshd.user, private_key=private_key,
        host_key=sshd.host_keys["ed25519"],
    )
    return device, endpoint


@contextmanager
def running_terminal_world(size_mib: int) -> Iterator[TerminalWorld]:
    """Starts everything; stops all of it on the way out, whatever happens.

    Keys only, so that the sshd leaves the test user's password alone and
    the SSH test runs on this machine need not wait for the benchmark.
    """
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-data-")))
        configure_django(data_dir)
        sshd = stack.enter_context(Sshd(password_login=False))
        private_key, public_key = keygen(data_dir / "key", "ed25519")
        sshd.authorize(public_key)
        output_file = write_output_file(stack, size_mib)
        username, password = "bench-tech", secrets.token_urlsafe(18)
        device, endpoint = create_records(sshd, private_key, username, password)

        gateway = BenchGateway(data_dir)
        stack.callback(gateway.stop)
        gateway.start()

        agent = Agent(data_dir, gateway.url, device)
        stack.callback(agent.stop)
        agent.start().wait_online()

        yield TerminalWorld(
            gateway_url=gateway.url,
            device_pk=device.pk,
            endpoint_pk=endpoint.pk,
            username=username,
            password=password,
            sshd_host=sshd.host,
            sshd_port=sshd.port,
            sshd_user=sshd.user,
            sshd_private_key=private_key,
            sshd_host_key=sshd.host_keys["ed25519"],
            output_file=output_file,
            output_size=size_mib * MIB,
        )
