"""A throwaway PostgreSQL server on a loopback port, for the scale-out tests.

`postgres_server()` runs `initdb` (trust authentication, no fsync) in a new
temporary folder, starts `postgres` on a free 127.0.0.1 port with its Unix
socket in that folder too, creates the database `gateway`, and yields
`postgres://postgres@127.0.0.1:PORT/gateway`. At the end it stops the server
with SIGINT (PostgreSQL's fast shutdown) and removes the folder.

PostgreSQL refuses to run as root, and the tests run as root here and in CI:
as root, initdb and postgres run as the `postgres` system user that Debian's
`postgresql` package creates (through setpriv, which execs, so signals reach
the server itself), and the folder is made theirs. Without the binaries or
that user the tests are skipped, or fail under CI (CI=true), where .ci/run
installs the package.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.live import LineReader, free_port

USER = "postgres"
DATABASE = "gateway"
START_TIMEOUT = 30


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def binaries() -> Path:
    """The folder of initdb and postgres: Debian keeps them off the PATH."""
    def version(folder: str) -> int:
        name = Path(folder).parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    for folder in reversed(candidates):
        if os.access(Path(folder) / "initdb", os.X_OK) and os.access(Path(folder) / "postgres", os.X_OK):
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).parent
    skip_or_fail("PostgreSQL's initdb and postgres are not installed (Debian: postgresql, see .ci/run)")
    raise AssertionError("unreachable")


def as_server_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs a program as the user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return [], None
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        skip_or_fail(f"PostgreSQL refuses to run as root and there is no {USER!r} user "
                     "(Debian's postgresql package creates it, see .ci/run)")
        raise AssertionError("unreachable") from None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", "--"], account
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", USER, "--"], account
    skip_or_fail("neither setpriv nor runuser is installed to run PostgreSQL as a non-root user")
    raise AssertionError("unreachable")


def run(command: list[str], **options) -> None:
    """Run a setup step; its output is in the error when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **options)
    if done.returncode != 0:
        name = next((Path(part).name for part in command if Path(part).name in ("initdb", "psql")), command[0])
        raise RuntimeError(f"{name} failed with {done.returncode}:\n{done.stdout}{done.stderr}")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL; yields the URL of its empty database `gateway`."""
    bin_dir = binaries()
    prefix, account = as_server_user()
    folder = Path(tempfile.mkdtemp(prefix="ra-postgres-"))
    process: subprocess.Popen | None = None
    try:
        if account is not None:
            os.chown(folder, account.pw_uid, account.pw_gid)
        folder.chmod(0o700)
        data = folder / "data"
        # cwd is the new folder: the server's user may not enter the current one.
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGTZ": "UTC"}
        if account is not None:
            env.update(HOME=str(folder), USER=USER, LOGNAME=USER)
        run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8",
             "--locale=C", "--no-sync"],
            cwd=folder, env=env,
        )
        port = free_port()
        process = subprocess.Popen(
            [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off"],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        log = LineReader(process.stderr)
        try:
            # Listening is not enough: connections are refused while it starts up.
            log.wait_for(r"database system is ready to accept connections", timeout=START_TIMEOUT)
        except TimeoutError:
            if process.poll() is not None:
                raise RuntimeError(f"postgres exited with {process.returncode}:\n" + "\n".join(log.lines)) from None
            raise
        run(
            [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
             "-U", USER, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}"],
            cwd=folder, env=env,
        )
        yield f"postgres://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients, no waiting for them
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
