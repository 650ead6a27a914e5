"""A real OpenSSH sshd on a loopback port, for the SSH bridge tests.

It runs `/usr/sbin/sshd -D -e` with its own config and host keys (Ed25519,
ECDSA, RSA) made fresh in a temporary folder, and logs to its stderr, which
the tests read (`Sshd.log`).

sshd must run as root, and it checks passwords against the system's, so as
root this creates (once, kept afterwards) the local user `ra-ssh-test` with a
home folder and gives it a new random password with chpasswd on every start.
It is not tests/telnetd.py's `ra-test`, whose fixture sets a new password of
its own on every start and would break a password login here whenever both
run at once; for the same reason two runs of these tests on one machine take
turns, each holding /run/lock/ra-ssh-test.lock while its sshd runs.

It also creates sshd's privilege separation folder /run/sshd when missing,
as the Debian package's service would. Without root or sshd the tests are
skipped, or fail under CI (CI=true), where .ci/run installs openssh-server.
"""

import fcntl
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.live import LineReader, free_port, need

USER = "ra-ssh-test"
LOCK = Path("/run/lock/ra-ssh-test.lock")
LOCK_TIMEOUT = 120
HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def keygen(path: Path, key_type: str, *extra: str) -> tuple[str, str]:
    """A new key pair made by ssh-keygen: (private key text, public key line)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"{key_type}@tests", *extra, "-f", str(path)],
        check=True, capture_output=True,
    )
    return path.read_text(), Path(f"{path}.pub").read_text().strip()


def key_line(text: str) -> str:
    """An OpenSSH public key line without its comment."""
    return " ".join(text.split()[:2])


class Sshd:
    def __init__(self, extra_config: str = "", password_login: bool = True) -> None:
        # sshd_config lines after ours, e.g. a higher MaxStartups for a benchmark's burst of logins.
        self.extra_config = extra_config
        # Keys only: the test user's password is left as it is, so this sshd
        # needs no turn and breaks no other run's password login.
        self.password_login = password_login
        self.host = "127.0.0.1"
        self.port = 0
        self.user = USER
        self.password = ""
        self.host_keys: dict[str, str] = {}  # "ed25519" -> "ssh-ed25519 AAAA…"
        self.fingerprints: dict[str, str] = {}  # "ed25519" -> "SHA256:…"
        self.dsa_refused = ""  # why DSA user keys cannot be tested; "" = they can
        self.log: LineReader | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen | None = None
        self._lock: int | None = None

    def __enter__(self) -> "Sshd":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def authorized_keys(self) -> Path:
        assert self._dir is not None
        return self._dir / "authorized_keys"

    def authorize(self, public_key: str) -> None:
        with self.authorized_keys.open("a") as keys:
            keys.write(public_key.strip() + "\n")

    def start(self) -> None:
        sshd = need("sshd")
        if os.geteuid() != 0:
            skip_or_fail("sshd must be started as root (it checks), and the SSH tests run it")
        if self.password_login:
            self._take_turn()
        self.password = self._prepare_user()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        # Readable by the test user: sshd reads authorized_keys as that user.
        self._dir = Path(tempfile.mkdtemp(prefix="ra-sshd-"))
        self._dir.chmod(0o755)
        self.authorized_keys.touch(0o644)
        for key_type in HOST_KEY_TYPES:
            path = self._dir / f"ssh_host_{key_type}_key"
            _, public = keygen(path, key_type)
            self.host_keys[key_type] = key_line(public)
            self.fingerprints[key_type] = fingerprint(Path(f"{path}.pub"))
        self.port = free_port()
        config = self._dir / "sshd_config"
        config.write_text(self._config())
        self.dsa_refused = self._check_dsa(sshd, config)
        if not self.dsa_refused:
            config.write_text(self._config() + "PubkeyAcceptedAlgorithms +ssh-dss\n")
        self._process = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.log = LineReader(self._process.stderr)
        self.log.wait_for(rf"Server listening on {self.host} port {self.port}", timeout=15)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def _take_turn(self) -> None:
        """Wait while another test run uses the test user (see the module's doc)."""
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another test run held {LOCK} for over {LOCK_TIMEOUT} s") from None
                time.sleep(0.1)  # another process's lock announces nothing to wait on

    def log_for(self, client_port: int) -> list[str]:
        """sshd's log lines about the connection from this client port."""
        assert self.log is not None
        mention = re.compile(rf"\bport {client_port}\b")
        return [line for line in self.log.lines if mention.search(line)]

    def _config(self) -> str:
        assert self._dir is not None
        host_keys = "".join(f"HostKey {self._dir}/ssh_host_{key_type}_key\n" for key_type in HOST_KEY_TYPES)
        return (
            f"ListenAddress {self.host}\n"
            f"Port {self.port}\n"
            f"{host_keys}"
            "PidFile none\n"
            "UsePAM no\n"
            "StrictModes no\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            f"PasswordAuthentication {'yes' if self.password_login else 'no'}\n"
            "PubkeyAuthentication yes\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin yes\n"
            "AcceptEnv LANG LC_*\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            # scp speaks SFTP since OpenSSH 9.
            "Subsystem sftp internal-sftp\n"
            # "Connection from … port N" and the close of each connection.
            "LogLevel VERBOSE\n"
            f"{self.extra_config}"
        )

    def _check_dsa(self, sshd: str, config: Path) -> str:
        assert self._dir is not None
        try:
            keygen(self._dir / "dsa_probe", "dsa")
        except subprocess.CalledProcessError as exc:
            return f"ssh-keygen cannot make DSA keys here ({exc.stderr.decode().strip()})"
        checked = subprocess.run(
            [sshd, "-T", "-f", str(config), "-o", "PubkeyAcceptedAlgorithms=+ssh-dss"],
            capture_output=True, text=True,
        )
        if checked.returncode != 0:
            return f"this sshd refuses DSA user keys ({checked.stderr.strip()})"
        accepted = next((line.split()[-1] for line in checked.stdout.splitlines()
                         if line.startswith("pubkeyacceptedalgorithms ")), "")
        if "ssh-dss" not in accepted.split(","):
            return "this sshd does not accept ssh-dss even when configured to"
        return ""

    def _prepare_user(self) -> str:
        for program in ("useradd", "chpasswd"):
            if shutil.which(program) is None:
                skip_or_fail(f"{program} is missing: the SSH tests need it to make the user {USER}")
        if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
            shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
            subprocess.run(["useradd", "--create-home", "--shell", shell, USER], check=True, capture_output=True)
        elif not self.password_login:
            return ""
        # Also for a keys-only sshd when the user is new: sshd refuses a locked account.
        password = "pw-" + secrets.token_urlsafe(18)
        subprocess.run(["chpasswd"], input=f"{USER}:{password}\n", text=True, check=True, capture_output=True)
        return password


def fingerprint(public_key_file: Path) -> str:
    """SHA256 fingerprint as ssh-keygen prints it."""
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key_file)], check=True, capture_output=True, text=True
    )
    return printed.stdout.split()[1]
