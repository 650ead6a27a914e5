"""The world a benchmark run measures, all on loopback: the targets (echo,
and a bulk source), a gateway per ASGI server (embedded SQLite in one
temporary DATA_DIR), the real agent of one device per gateway with a
PASSTHROUGH endpoint to each target, and websockify.

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

from tests.live import ROOT, Agent, Gateway, LineReader, free_port, stop_process, wait_for_port


@dataclass(frozen=True)
class Site:
    """One gateway of the run, on its ASGI server, with its own device and agent."""

    server: str
    port: int
    pid: int
    agent_pid: int
    device_pk: int
    # PASSTHROUGH endpoints of the device, by target: "echo", "source".
    endpoints: dict[str, int]

    def client_url(self, target: str = "echo") -> str:
        return (f"ws://127.0.0.1:{self.port}/service/remoteaccess/client/"
                f"{self.device_pk}/configurations/{self.endpoints[target]}")


@dataclass(frozen=True)
class World:
    echo_port: int
    websockify_port: int
    token: str
    sites: tuple[Site, ...]

    @property
    def gateway_port(self) -> int:
        return self.sites[0].port

    @property
    def device_pk(self) -> int:
        return self.sites[0].device_pk

    @property
    def endpoint_pk(self) -> int:
        return self.sites[0].endpoints["echo"]

    @property
    def client_url(self) -> str:
        return self.sites[0].client_url()


class BenchGateway(Gateway):
    """`manage.py serve` in the embedded mode on the benchmark's DATA_DIR.

    The tests' Gateway points at their test database through DATABASE_URL;
    here the server runs as a default installation does.
    """

    def __init__(self, data_dir: Path, server: str = "uvicorn") -> None:
        self.port = free_port()
        self.tls_port = None
        self.env = {**os.environ, "DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
                    "ASGI_SERVER": server}
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


def create_user():
    """The benchmark's user and its API token."""
    from django.contrib.auth.models import User

    from portal.models import ApiToken

    user = User.objects.create_user("bench", password=None)
    return user, ApiToken.issue(user, "bench")[1]


def create_device(user, serial: str, targets: dict[str, int]):
    """A device the user may read, with a PASSTHROUGH endpoint to each target
    port; returns (device, {target: endpoint})."""
    from guardian.shortcuts import assign_perm

    from endpoints.models import Device, Endpoint, Protocol

    device = Device.objects.create(serial=serial, name=f"Bench {serial}")
    assign_perm("remote_access_read", user, device)
    endpoints = {
        name: Endpoint.objects.create(device=device, name=name, protocol=Protocol.PASSTHROUGH,
                                      hostname="127.0.0.1", port=port)
        for name, port in targets.items()
    }
    return device, endpoints


def start_target(stack: ExitStack, module: str, *args: str) -> int:
    """A target process (bench.echo, bench.source) that prints its port and
    stops when its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    stack.callback(stop_process, process)
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
def running_world(servers: tuple[str, ...] = ("uvicorn",), source_size: int = 0) -> Iterator[World]:
    """Starts a gateway per ASGI server, each with its own device and agent,
    the echo target (and a source of source_size bytes per connection when
    asked) and websockify; stops all of it on the way out, whatever happens."""
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-data-")))
        configure_django(data_dir)
        targets = {"echo": start_target(stack, "bench.echo")}
        if source_size:
            targets["source"] = start_target(stack, "bench.source", str(source_size))
        user, token = create_user()
        sites = []
        for server in servers:
            device, endpoints = create_device(user, f"bench-{server}", targets)
            gateway = BenchGateway(data_dir, server)
            stack.callback(gateway.stop)
            gateway.start()
            agent = Agent(data_dir, gateway.url, device)
            stack.callback(agent.stop)
            agent.start().wait_online()
            sites.append(Site(server, gateway.port, gateway.process.pid, agent.process.pid, device.pk,
                              {name: endpoint.pk for name, endpoint in endpoints.items()}))
        yield World(
            echo_port=targets["echo"],
            websockify_port=start_websockify(stack, targets["echo"]),
            token=token,
            sites=tuple(sites),
        )
