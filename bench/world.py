"""The world a benchmark run measures, all on loopback: the echo target, the
gateway (daphne, embedded SQLite in a temporary DATA_DIR), the real agent of
one device with a PASSTHROUGH endpoint to the target, and websockify.

Named `world`, not `setup`, so that no tool mistakes it for a setuptools
script.
"""

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.live import ROOT, Agent, Gateway, LineReader, free_port, wait_for_port

STOP_TIMEOUT = 10


@dataclass(frozen=True)
class World:
    echo_port: int
    websockify_port: int
    gateway_port: int
    device_pk: int
    endpoint_pk: int
    token: str

    @property
    def client_url(self) -> str:
        return (f"ws://127.0.0.1:{self.gateway_port}/service/remoteaccess/client/"
                f"{self.device_pk}/configurations/{self.endpoint_pk}")


class BenchGateway(Gateway):
    """`manage.py serve` in the embedded mode on the benchmark's DATA_DIR.

    The tests' Gateway points at their test database through DATABASE_URL;
    here the server runs as a default installation does.
    """

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.tls_port = None
        self.env = {**os.environ, "DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
        self.process = None
        self.output = None


def configure_django(data_dir: Path) -> None:
    """Django in this process, on a fresh embedded database in data_dir."""
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    # Either would take the server out of the embedded mode.
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def create_records(echo_port: int):
    """A user with an API token and read access to a device that has a
    PASSTHROUGH endpoint to the echo target; returns (device, endpoint, token)."""
    from django.contrib.auth.models import User
    from guardian.shortcuts import assign_perm

    from endpoints.models import Device, Endpoint, Protocol
    from portal.models import ApiToken

    user = User.objects.create_user("bench", password=None)
    token = ApiToken.issue(user, "bench")[1]
    device = Device.objects.create(serial="bench-gw", name="Bench gateway")
    assign_perm("remote_access_read", user, device)
    endpoint = Endpoint.objects.create(
        device=device, name="Echo", protocol=Protocol.PASSTHROUGH, hostname="127.0.0.1", port=echo_port,
    )
    return device, endpoint, token


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def start_echo(stack: ExitStack) -> int:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.echo"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    stack.callback(stop_process, process)
    # Closing stdin is the echo process's cue to stop by itself.
    stack.callback(process.stdin.close)
    port = int(LineReader(process.stdout).wait_for(r"^\d+$", timeout=10))
    wait_for_port(port, process)
    return port


def start_websockify(stack: ExitStack, target_port: int) -> int:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "websockify", f"127.0.0.1:{port}", f"127.0.0.1:{target_port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    stack.callback(stop_process, process)
    wait_for_port(port, process)
    return port


@contextmanager
def running_world() -> Iterator[World]:
    """Starts everything; stops all of it on the way out, whatever happens."""
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-data-")))
        configure_django(data_dir)
        echo_port = start_echo(stack)
        device, endpoint, token = create_records(echo_port)

        gateway = BenchGateway(data_dir)
        stack.callback(gateway.stop)
        gateway.start()

        agent = Agent(data_dir, gateway.url, device)
        stack.callback(agent.stop)
        agent.start().wait_online()

        websockify_port = start_websockify(stack, echo_port)
        yield World(
            echo_port=echo_port,
            websockify_port=websockify_port,
            gateway_port=gateway.port,
            device_pk=device.pk,
            endpoint_pk=endpoint.pk,
            token=token,
        )
