"""An SSH terminal over a tunnel: asyncssh as the client, fed by hand.

asyncssh opens no socket here: `connect(tunnel=...)` is given an object whose
`create_connection` hands asyncssh's protocol a transport of ours over the
ByteStream (see DESIGN.md, field notes). Nothing is read from the server's
own `~/.ssh`, agent or config.

Host key: the server's key is checked in `validate_host_public_key`, during
the key exchange, so that no credential is sent before it matches the pinned
key. Without a pinned key it is accepted and reported as "host-key" (one
OpenSSH line, also in `BridgeResult.server_host_key`) so the caller can pin
it. Ed25519 is asked for first, so fingerprints match what OpenSSH users
see; a pinned key's own algorithm is asked for before that.

Credentials are handed out by the client object's auth callbacks rather than
given to `connect`, so that "authenticating" is reported before the first
one leaves. The password is sent at most once, by the "password" method or
as the answer to a keyboard-interactive password prompt.

The caller owns the stream; the bridge closes it too when SSH is done with it
(closing twice is harmless).
"""

import asyncio
import collections
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncssh
from asyncssh.encryption import get_default_encryption_algs
from asyncssh.public_key import get_default_public_key_algs, get_public_key_algs

from sessions.bridges.base import BridgeResult, ByteStream, Input, Output, Resize, Status
from sessions.bridges.transport import CHUNK, CLOSE_TIMEOUT, StreamTransport

log = logging.getLogger(__name__)

SHELL_EXITED = "the remote shell exited"
BROWSER_CLOSED = "closed in the browser"
CONNECTION_LOST = "the connection to the device was lost"
TIMED_OUT = "timed out waiting for the SSH server"
PASSWORD_REFUSED = "authentication failed: the SSH server refused the user name or password"
KEY_REFUSED = "authentication failed: the SSH server refused the key"
NOT_SSH = "the target did not answer as an SSH server"

# Host key algorithms in the order OpenSSH's client asks for them; ssh-rsa
# (SHA-1) and ssh-dss last, for old devices.
HOST_KEY_ALGS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-ed448",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
    "ssh-dss",
)
ENVIRONMENT = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
KEEPALIVE_INTERVAL = 30
# asyncssh's defaults with AES-GCM before chacha20-poly1305: asyncssh builds
# three ChaCha20 contexts per packet in Python, about 8x the gateway's CPU of
# one AES-GCM call for a terminal's 4 KiB packets (bench/terminal.py); a
# server without AES-GCM still gets chacha20 or AES-CTR.
ENCRYPTION_ALGS = sorted((alg.decode() for alg in get_default_encryption_algs()), key=lambda alg: "-gcm@" not in alg)

T = TypeVar("T")


@dataclass(frozen=True)
class SshCredentials:
    username: str
    # USER_PASS (also answers keyboard-interactive password prompts)
    password: str = field(default="", repr=False)
    # KEY_PAIR: OpenSSH private key text
    private_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class SshOptions:
    host_key: str = ""  # pinned server key, one OpenSSH public-key line; "" = not pinned
    term: str = "xterm-256color"
    cols: int = 80
    rows: int = 24
    connect_timeout: float = 30.0


class Refused(Exception):
    """The session cannot start; the message says why, in a technician's words."""


async def run_ssh(
    stream: ByteStream,
    credentials: SshCredentials,
    options: SshOptions,
    events: asyncio.Queue,
    output: Output,
    status: Status,
) -> BridgeResult:
    tunnel = Tunnel(stream)
    client: Client | None = None
    conn: asyncssh.SSHClientConnection | None = None
    early: list[Input | Resize] = []
    try:
        try:
            client = Client(credentials, _pinned_key(options.host_key), _private_key(credentials), status)
            opened = await _unless_closed(
                asyncio.wait_for(_open(tunnel, client, credentials, options), options.connect_timeout), events, early
            )
        except (Refused, TimeoutError, OSError, asyncssh.Error) as exc:
            reason = _failure(exc, client, tunnel)
            log.info("SSH session failed: %s", reason)
            return BridgeResult(reason, failed=True, server_host_key=client.server_key_line if client else "")
        if opened is None:
            return BridgeResult(BROWSER_CLOSED, server_host_key=client.server_key_line)
        conn, process = opened
        if client.banner:
            await output(client.banner.encode().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        await status("connected", "")
        reason = await _relay(process, client, tunnel, events, early, output)
        return BridgeResult(reason, server_host_key=client.server_key_line)
    finally:
        if conn is not None:
            conn.close()
            try:
                await asyncio.wait_for(conn.wait_closed(), CLOSE_TIMEOUT)
            except TimeoutError:
                conn.abort()
        if client is not None:
            await client.settle()
        await tunnel.close()


async def _open(
    tunnel: "Tunnel", client: "Client", credentials: SshCredentials, options: SshOptions
) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientProcess]:
    conn = await asyncssh.connect(
        "device",
        22,
        tunnel=tunnel,
        client_factory=lambda: client,
        config=None,
        username=credentials.username,
        password=None,
        client_keys=None,
        agent_path=None,
        known_hosts=([], [], []),  # every key goes through Client.validate_host_public_key
        x509_trusted_certs=None,
        gss_host=None,
        host_based_auth=False,
        preferred_auth=client.methods,
        server_host_key_algs=client.host_key_algs,
        signature_algs=[*(alg.decode() for alg in get_default_public_key_algs()), "ssh-dss"],
        encryption_algs=ENCRYPTION_ALGS,
        keepalive_interval=KEEPALIVE_INTERVAL,
    )
    try:
        await client.announced()  # also when the server asked for no authentication
        process = await conn.create_process(
            term_type=options.term,
            term_size=(max(1, options.cols), max(1, options.rows)),
            term_modes={asyncssh.PTY_IUTF8: 1},
            env=ENVIRONMENT,  # a server that does not accept them ignores them
            encoding=None,
            stderr=asyncssh.STDOUT,
        )
    except BaseException:
        conn.abort()
        raise
    return conn, process


async def _relay(
    process: asyncssh.SSHClientProcess,
    client: "Client",
    tunnel: "Tunnel",
    events: asyncio.Queue,
    early: list["Input | Resize"],
    output: Output,
) -> str:
    pump = asyncio.create_task(_pump(process, output))
    feed = asyncio.create_task(_feed(process, tunnel, events, early))
    try:
        await asyncio.wait({pump, feed}, return_when=asyncio.FIRST_COMPLETED)
        if feed.done() and feed.result():
            return BROWSER_CLOSED
        await pump
    finally:
        for task in (pump, feed):
            task.cancel()
        await asyncio.gather(pump, feed, return_exceptions=True)
    try:
        await asyncio.wait_for(process.wait_closed(), CLOSE_TIMEOUT)
    except TimeoutError:
        pass
    if process.exit_signal:
        return f"{SHELL_EXITED} (signal {process.exit_signal[0]})"
    if process.exit_status is not None:
        return f"{SHELL_EXITED} (exit status {process.exit_status})"
    if client.lost or tunnel.ended:
        return CONNECTION_LOST
    return SHELL_EXITED


async def _pump(process: asyncssh.SSHClientProcess, output: Output) -> None:
    """Shell output to the browser, one read at a time: while output() waits,
    nothing more is read and the SSH window stops the server."""
    while True:
        try:
            data = await process.stdout.read(CHUNK)
        except (OSError, asyncssh.Error):
            return
        if not data:
            return
        await output(data)


async def _feed(
    process: asyncssh.SSHClientProcess, tunnel: "Tunnel", events: asyncio.Queue, early: list["Input | Resize"]
) -> bool:
    """Browser events to the shell; True once the page has gone, False if the
    channel can take no more."""
    pending = collections.deque(early)
    while True:
        event = pending.popleft() if pending else await events.get()
        try:
            if event is None:
                return True
            if isinstance(event, Input):
                # As typed: Ctrl-C is the byte 0x03, which the remote pty turns
                # into SIGINT.
                process.stdin.write(event.data)
                await process.stdin.drain()
                await tunnel.drained()
            elif isinstance(event, Resize):
                process.change_terminal_size(max(1, event.cols), max(1, event.rows))
        except (OSError, asyncssh.Error):
            return False


async def _unless_closed(work: Awaitable[T], events: asyncio.Queue, early: list["Input | Resize"]) -> T | None:
    """The result of `work`, or None if the page went away first; other
    events that arrive meanwhile are kept in `early`."""

    async def watch() -> None:
        while (event := await events.get()) is not None:
            early.append(event)

    working = asyncio.ensure_future(work)
    watching = asyncio.create_task(watch())
    try:
        await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (working, watching):
            task.cancel()
        await asyncio.gather(working, watching, return_exceptions=True)
    if watching.done() and not watching.cancelled():
        return None
    return working.result()


class Client(asyncssh.SSHClient):
    """Checks the host key, hands out the credentials, remembers what happened."""

    def __init__(
        self,
        credentials: SshCredentials,
        pinned: asyncssh.SSHKey | None,
        key: asyncssh.SSHKey | None,
        status: Status,
    ) -> None:
        self._password = credentials.password or None
        self._key = key
        self._pinned = pinned
        self._status = status
        self._announcement: asyncio.Future[None] | None = None
        self.offered: asyncssh.SSHKey | None = None
        self.tried_key = False
        self.sent_password = False
        self.banner = ""
        self.lost = False
        self.conn: asyncssh.SSHClientConnection | None = None

    @property
    def methods(self) -> list[str]:
        methods = ["publickey"] if self._key else []
        if self._password:
            methods += ["password", "keyboard-interactive"]
        return methods or ["keyboard-interactive"]  # answers prompt-less challenges only

    @property
    def host_key_algs(self) -> list[str]:
        supported = {alg.decode() for alg in get_public_key_algs()}
        first = [alg.decode() for alg in self._pinned.sig_algorithms] if self._pinned else []
        return [alg for alg in dict.fromkeys([*first, *HOST_KEY_ALGS]) if alg in supported]

    @property
    def server_key_line(self) -> str:
        return _key_line(self.offered) if self.offered else ""

    @property
    def mismatch(self) -> bool:
        return self._pinned is not None and self.offered is not None and self.offered != self._pinned

    def mismatch_reason(self) -> str:
        assert self._pinned is not None and self.offered is not None
        expected = self._pinned.get_fingerprint("sha256")
        return f"host key mismatch: expected {expected}, got {self.offered.get_fingerprint('sha256')}"

    def auth_failure(self) -> str:
        if self.tried_key and self.sent_password:
            return "authentication failed: the SSH server refused the key and the password"
        if self.tried_key:
            return KEY_REFUSED
        if self.sent_password:
            return PASSWORD_REFUSED
        if self._key:
            return "authentication failed: the SSH server does not accept key login for this user"
        if self._password:
            return "authentication failed: the SSH server does not accept password login for this user"
        return "authentication failed: the SSH server asks for a password or key, and none is stored"

    # asyncssh callbacks

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        if self.offered is None:
            self.offered = key
        elif key != self.offered:  # a different key on a re-key
            return False
        return self._pinned is None or key == self._pinned

    def auth_banner_received(self, msg: str, lang: str) -> None:
        self.banner += msg

    def begin_auth(self, username: str) -> None:
        self._announcement = asyncio.ensure_future(self._announce())

    async def _announce(self) -> None:
        if self._pinned is None and self.offered is not None:
            await self._status("host-key", _key_line(self.offered))
        await self._status("authenticating", "")

    async def announced(self) -> None:
        if self._announcement is not None:
            await self._announcement

    async def settle(self) -> None:
        """Stop reporting, when the connection ended before auth was done."""
        if self._announcement is not None:
            self._announcement.cancel()
            await asyncio.gather(self._announcement, return_exceptions=True)

    async def public_key_auth_requested(self) -> asyncssh.SSHKey | None:  # type: ignore[override]
        await self.announced()
        if self._key is None or self.tried_key:
            return None
        self.tried_key = True
        return self._key

    async def password_auth_requested(self) -> str | None:  # type: ignore[override]
        await self.announced()
        return self._take_password()

    def kbdint_auth_requested(self) -> str | None:
        return "" if self._password and not self.sent_password else None

    async def kbdint_challenge_received(  # type: ignore[override]
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        await self.announced()
        if not prompts:
            return []
        if len(prompts) == 1 and not prompts[0][1]:  # one hidden answer: the password
            password = self._take_password()
            return None if password is None else [password]
        return None

    def _take_password(self) -> str | None:
        if not self._password or self.sent_password:
            return None
        self.sent_password = True
        return self._password


class Tunnel:
    """What asyncssh's `tunnel=` wants: a `create_connection` that gives its
    protocol a transport over our ByteStream."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.transport: StreamTransport | None = None

    async def create_connection(
        self, session_factory: Any, host: str, port: int
    ) -> tuple["StreamTransport", asyncio.Protocol]:
        protocol = session_factory()
        self.transport = StreamTransport(self._stream, protocol)
        self.transport.start()
        return self.transport, protocol

    @property
    def ended(self) -> bool:
        return self.transport is not None and self.transport.ended

    @property
    def received(self) -> bytes:
        return self.transport.head if self.transport else b""

    async def drained(self) -> None:
        if self.transport is not None:
            await self.transport.drained()

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.finish()
        else:
            await self._stream.close()


def _pinned_key(line: str) -> asyncssh.SSHKey | None:
    if not line.strip():
        return None
    try:
        return asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise Refused("the stored host key is not a valid SSH public key: correct it or clear it") from None


def _private_key(credentials: SshCredentials) -> asyncssh.SSHKey | None:
    if not credentials.username:
        raise Refused("no user name is set for this SSH endpoint")
    if not credentials.private_key.strip():
        return None
    try:
        return asyncssh.import_private_key(credentials.private_key)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        # Never the exception's text: keep anything about the key out of messages.
        raise Refused("the stored private key cannot be read: upload it again") from None


def _key_line(key: asyncssh.SSHKey) -> str:
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def _failure(exc: BaseException, client: Client | None, tunnel: Tunnel) -> str:
    if isinstance(exc, Refused):
        return str(exc)
    assert client is not None
    if isinstance(exc, asyncssh.HostKeyNotVerifiable) and client.mismatch:
        return client.mismatch_reason()
    if isinstance(exc, TimeoutError):
        return TIMED_OUT
    if isinstance(exc, asyncssh.PermissionDenied):
        return client.auth_failure()
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"the SSH server did not open a shell ({exc.reason})"
    server_version = client.conn.get_extra_info("server_version") if client.conn else None
    if not server_version:
        first_line = tunnel.received.split(b"\n")[0].strip()
        if first_line.startswith(b"SSH-"):
            return f"the SSH server speaks a protocol version the gateway does not ({_printable(first_line)})"
        if first_line:
            return f"{NOT_SSH} (it sent {_printable(first_line)!r})"
        return f"{NOT_SSH} (it closed the connection without a word)"
    if isinstance(exc, asyncssh.ConnectionLost):
        return f"{CONNECTION_LOST} during the SSH handshake"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"the SSH connection failed: {exc.reason}"
    return f"the SSH connection failed: {exc}"


def _printable(data: bytes) -> str:
    text = data[:60].decode("utf-8", "replace")
    return "".join(char if char.isprintable() else "?" for char in text)
