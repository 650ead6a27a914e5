"""Cumulocity's own local proxy, c8ylp from PyPI, unmodified, against this
server over TLS: `c8ylp server`, then the OpenSSH client and scp through it
to a real sshd behind the real agent."""

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.contrib.auth.models import User

from endpoints.models import Endpoint, Protocol
from tests.live import Agent, LineReader, free_port, fresh_device, live_gateway, need
from tests.sshd import Sshd

MIB = 1024 * 1024
C8YLP = [sys.executable, "-m", "c8ylp"]

pytestmark = pytest.mark.usefixtures("gateway_log")


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker):
    with live_gateway(django_db_blocker, tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def servers(gateway):
    with Sshd() as sshd:
        yield {"gateway": gateway, "sshd": sshd}


@pytest.fixture
def world(servers, tmp_path):
    sshd = servers["sshd"]
    # c8ylp insists on ROLE_REMOTE_ACCESS_ADMIN, which ADMIN on a device gives.
    device, _ = fresh_device("gw-c8ylp", "Proxy gateway", permission="remote_access_admin")
    User.objects.create_user("stranger", password="stranger-pass-1")
    Endpoint.objects.create(device=device, name="Passthrough", protocol=Protocol.PASSTHROUGH,
                            hostname=sshd.host, port=sshd.port)
    key = tmp_path / "id_ed25519"
    subprocess.run([need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sshd.authorize(key.with_suffix(".pub").read_text())
    agent = Agent(tmp_path, servers["gateway"].url, device).start()
    agent.wait_online()
    yield {"key": key, "home": tmp_path, **servers}
    agent.stop()


def c8ylp_server(world: dict, user: str, password: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "HOME": str(world["home"]), "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1"}
    process = subprocess.Popen(
        [*C8YLP, "server", "gw-c8ylp", "--host", world["gateway"].https_url, "--tenant", "t1", "--user", user,
         "--password", password, "--port", str(port), "--ignore-ssl-validate", "--disable-prompts"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    return process, port


def ssh_options(world: dict) -> list[str]:
    return ["-i", str(world["key"]), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


@contextmanager
def running_c8ylp(world: dict) -> Iterator[int]:
    """A c8ylp server, listening; its port."""
    process, port = c8ylp_server(world, "tech", "tech-pass-1")
    output = LineReader(process.stdout)
    try:
        # Not a probe of the port: c8ylp shares one WebSocket between its TCP
        # clients, and a probe would take (and break) it.
        output.wait_for("c8ylp is listening", timeout=30)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_ssh_runs_a_command_through_c8ylp(world):
    with running_c8ylp(world) as port:
        ran = subprocess.run([need("ssh"), "-p", str(port), *ssh_options(world), f"{world['sshd'].user}@127.0.0.1",
                              "echo ok"], capture_output=True, text=True, timeout=60)
    assert ran.stdout.strip() == "ok", ran.stderr


def test_a_5_mib_scp_arrives_intact_through_c8ylp(world):
    upload = world["home"] / "upload.bin"
    upload.write_bytes(os.urandom(5 * MIB))
    target = f"/tmp/c8ylp-upload-{os.getpid()}.bin"
    try:
        with running_c8ylp(world) as port:
            copied = subprocess.run([need("scp"), "-P", str(port), *ssh_options(world), str(upload),
                                     f"{world['sshd'].user}@127.0.0.1:{target}"],
                                    capture_output=True, text=True, timeout=120)
        assert copied.returncode == 0, copied.stderr
        with open(target, "rb") as arrived:
            assert hashlib.sha256(arrived.read()).hexdigest() == hashlib.sha256(upload.read_bytes()).hexdigest()
    finally:
        if os.path.exists(target):
            os.unlink(target)


def test_c8ylp_refuses_a_user_without_access(world):
    process, port = c8ylp_server(world, "stranger", "stranger-pass-1")
    try:
        assert process.wait(timeout=60) != 0
        text = process.stdout.read().decode()
        assert "gw-c8ylp" in text and ("not found" in text.lower() or "permission" in text.lower()), text
    finally:
        if process.poll() is None:
            process.kill()
