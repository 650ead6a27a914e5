"""The local account that the real sshd and telnetd of the tests log in to.

OpenSSH and /bin/login check the system's passwords, so the tests need a
real account: `ra-test`, created when missing (as root only). Its password is
kept in a root-only file, so test processes running at once agree on it.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

USER = "ra-test"
PASSWORD_FILE = Path(tempfile.gettempdir()) / "ra-test-password"


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def local_account() -> tuple[str, str]:
    """(user name, password) of the test account, made ready to log in."""
    if os.geteuid() != 0:
        unavailable(f"the real sshd and telnetd log in to a local account ({USER}), which needs root to set up")
    for program in ("useradd", "chpasswd"):
        if shutil.which(program) is None:
            unavailable(f"{program} is missing: it is needed to set up the test account {USER}")
    if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        created = subprocess.run(["useradd", "--create-home", "--shell", shell, USER], capture_output=True, text=True)
        # 9: another test process made it in the meantime.
        if created.returncode not in (0, 9):
            raise RuntimeError(f"useradd {USER} failed: {created.stderr.strip()}")
    try:
        fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = PASSWORD_FILE.read_text().strip()
    else:
        password = "pw-" + secrets.token_urlsafe(18)
        with os.fdopen(fd, "w") as handle:
            handle.write(password)
    subprocess.run(["chpasswd"], input=f"{USER}:{password}\n", text=True, check=True, capture_output=True)
    return USER, password
