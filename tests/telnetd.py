"""A real telnetd on loopback for tests: inetutils' telnetd, one per
connection, started by socat, with /bin/login asking for a local user.

Needs root (telnetd runs login, and the test user is a system account) and
Debian's `inetutils-telnetd` and `socat` (.ci/run installs them). Without
them a test skips, except under CI, where it fails.
"""

import os
import secrets
import shlex
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.live import free_port, need, wait_for_port

# The SSH fixture creates and uses the same account, the same way.
TEST_USER = "ra-test"


@dataclass(frozen=True)
class TelnetServer:
    host: str
    port: int
    user: str
    password: str


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def ensure_test_user() -> str:
    """Create the local test user if it is missing, give it a fresh random
    password, and return that password."""
    if os.geteuid() != 0:
        unavailable("a real telnetd needs root: it runs /bin/login for a local test user")
    exists = subprocess.run(["id", "-u", TEST_USER], capture_output=True).returncode == 0
    if not exists:
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        created = subprocess.run(
            ["useradd", "--create-home", "--shell", shell, TEST_USER], capture_output=True, text=True
        )
        # 9: someone else (the SSH fixture) created it in the meantime.
        if created.returncode not in (0, 9):
            raise RuntimeError(f"useradd {TEST_USER} failed: {created.stderr.strip()}")
    password = secrets.token_urlsafe(18)
    subprocess.run(["chpasswd"], input=f"{TEST_USER}:{password}\n", text=True, check=True, capture_output=True)
    return password


@contextmanager
def telnetd() -> Iterator[TelnetServer]:
    """`socat` forking `telnetd -h` (no host banner) for each connection on a
    free loopback port; stopped, with the telnetds it started, on exit."""
    program = need("telnetd")
    socat = need("socat")
    password = ensure_test_user()
    port = free_port()
    process = subprocess.Popen(
        [socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"EXEC:{shlex.quote(program)} -h,nofork"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        yield TelnetServer("127.0.0.1", port, TEST_USER, password)
    finally:
        # socat and its forks share a process group; each telnetd gives its
        # login session a new one, which ends with the pty when telnetd does.
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
