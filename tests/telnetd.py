"""A real telnetd on loopback for tests: inetutils' telnetd, one per
connection, started by socat, with /bin/login asking for a local user.

Needs root (telnetd runs login, and the test user is a system account) and
Debian's `inetutils-telnetd` and `socat` (.ci/run installs them). Without
them a test skips, except under CI, where it fails.
"""

import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.live import free_port, need, wait_for_port
from tests.local_user import local_account


@dataclass(frozen=True)
class TelnetServer:
    host: str
    port: int
    user: str
    password: str


@contextmanager
def telnetd() -> Iterator[TelnetServer]:
    """`socat` forking `telnetd -h` (no host banner) for each connection on a
    free loopback port; stopped, with the telnetds it started, on exit."""
    program = need("telnetd")
    socat = need("socat")
    user, password = local_account()
    port = free_port()
    process = subprocess.Popen(
        [socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"EXEC:{shlex.quote(program)} -h,nofork"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        yield TelnetServer("127.0.0.1", port, user, password)
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
