"""The SSH bridge against a real OpenSSH sshd (tests/sshd.py), with a plain
TCP connection standing in for the device tunnel."""

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from endpoints.keys import fingerprint, generate_key_pair, read_private_key
from sessions.bridges.base import BridgeResult, Input, Resize, StreamReaderWriter
from sessions.bridges.ssh import SshCredentials, SshOptions, run_ssh
from tests.sshd import Sshd, keygen

TIMEOUT = 10


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with Sshd() as server:
        yield server


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ssh-keys")


class Terminal:
    """One run of the bridge, driven like a browser page would."""

    def __init__(self, stream: "CountingStream", credentials: SshCredentials, options: SshOptions) -> None:
        self.stream = stream
        self.client_port: int = stream.writer.get_extra_info("sockname")[1]
        self.events: asyncio.Queue = asyncio.Queue()
        self.received = b""
        self.chunks: list[bytes] = []
        self.reading = asyncio.Event()  # clear it to stop taking output, as a stuck page would
        self.reading.set()
        self._seen = 0
        self._more = asyncio.Event()
        self.statuses: list[tuple[str, str]] = []
        self.task = asyncio.create_task(
            run_ssh(stream, credentials, options, self.events, self._output, self._status)
        )
        self.task.add_done_callback(lambda _: self._more.set())

    async def _output(self, data: bytes) -> None:
        await self.reading.wait()
        self.chunks.append(data)
        self.received += data
        self._more.set()

    async def _status(self, state: str, message: str) -> None:
        self.statuses.append((state, message))

    async def type(self, text: bytes) -> None:
        await self.events.put(Input(text))

    async def expect(self, pattern: bytes, timeout: float = TIMEOUT) -> re.Match:
        """Wait for the pattern in output not matched before."""
        regex = re.compile(pattern)

        async def wait() -> re.Match:
            while True:
                if match := regex.search(self.received, self._seen):
                    self._seen = match.end()
                    return match
                if self.task.done():
                    raise AssertionError(f"the bridge ended ({self.task.result()}) before {pattern!r}")
                self._more.clear()
                await self._more.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout} s in {self.received[-500:]!r}") from None

    async def run(self, command: str, answer: bytes) -> None:
        """Type a command and wait for its answer on a line of its own."""
        await self.type(command.encode() + b"\r")
        await self.expect(rb"[\r\n]" + re.escape(answer) + rb"\r\n")

    async def result(self, timeout: float = TIMEOUT) -> BridgeResult:
        return await asyncio.wait_for(self.task, timeout)


class CountingStream(StreamReaderWriter):
    """Counts what the device side delivered to the bridge."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.delivered = 0
        self.got_a_megabyte = asyncio.Event()

    async def read(self) -> bytes:
        data = await super().read()
        self.delivered += len(data)
        if self.delivered >= 1024 * 1024:
            self.got_a_megabyte.set()
        return data


async def connect(port: int, credentials: SshCredentials, options: SshOptions | None = None) -> Terminal:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return Terminal(CountingStream(reader, writer), credentials, options or SshOptions())


async def login(sshd: Sshd, options: SshOptions | None = None) -> Terminal:
    return await connect(sshd.port, SshCredentials(sshd.user, password=sshd.password), options)


async def assert_it_logs_in(terminal: Terminal) -> None:
    await terminal.run("echo $((6*7))", b"42")
    await terminal.events.put(None)
    assert (await terminal.result()).reason == "closed in the browser"


@pytest.mark.asyncio
async def test_it_logs_in_with_a_password_and_runs_a_command(sshd):
    terminal = await login(sshd)
    await assert_it_logs_in(terminal)
    assert [state for state, _ in terminal.statuses] == ["host-key", "authenticating", "connected"]


@pytest.mark.asyncio
@pytest.mark.parametrize("key_type", ["rsa", "ecdsa", "ed25519", "dsa"])
async def test_it_logs_in_with_an_openssh_key(sshd, key_dir, key_type):
    if key_type == "dsa" and sshd.dsa_refused:
        pytest.skip(sshd.dsa_refused)
    private, public = keygen(key_dir / f"id_{key_type}", key_type)
    sshd.authorize(public)
    terminal = await connect(sshd.port, SshCredentials(sshd.user, private_key=private))
    await assert_it_logs_in(terminal)


@pytest.mark.asyncio
@pytest.mark.parametrize("key_format", ["PEM", "PKCS8"])
async def test_it_logs_in_with_an_rsa_key_converted_from(sshd, key_dir, key_format):
    private, public = keygen(key_dir / f"id_rsa_{key_format}", "rsa", "-b", "2048", "-m", key_format)
    assert "OPENSSH" not in private
    sshd.authorize(public)
    converted = read_private_key(private).openssh
    terminal = await connect(sshd.port, SshCredentials(sshd.user, private_key=converted))
    await assert_it_logs_in(terminal)


@pytest.mark.asyncio
async def test_it_passes_utf8_through_untouched(sshd):
    terminal = await login(sshd)
    await terminal.run(r"printf 'ü€😀\n'", "ü€😀".encode())
    await terminal.run("echo $LANG", b"C.UTF-8")
    await terminal.events.put(None)
    await terminal.result()


@pytest.mark.asyncio
async def test_long_utf8_output_split_across_reads_arrives_intact(sshd):
    terminal = await login(sshd)
    # Units of 7 bytes: the pty and the SSH channel hand data on in multiples
    # of 1024 bytes, which 7 does not divide, so most reads end inside a
    # character. Where none did, the test tries again.
    unit = "😀€"
    for _ in range(5):
        before = len(terminal.chunks)
        await terminal.run(f"printf '{unit}%.0s' $(seq 15000); echo; echo end-$((4*4))", b"end-16")
        assert unit.encode() * 15000 in b"".join(terminal.chunks[before:])
        if any(not is_utf8(chunk) for chunk in terminal.chunks[before:]):
            break
    else:
        pytest.fail("no read ended inside a character, so this test proved nothing")
    await terminal.events.put(None)
    await terminal.result()


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.asyncio
async def test_a_page_that_stops_reading_stops_the_server_sending(sshd):
    terminal = await login(sshd)
    await terminal.run("echo ready-$((2*2))", b"ready-4")
    stream = terminal.stream
    terminal.reading.clear()
    await terminal.type(b"yes 0123456789abcdef | head -c 200000000\r")
    await asyncio.wait_for(stream.got_a_megabyte.wait(), TIMEOUT)
    # Unchecked, the PTY alone would deliver tens of MB in this time.
    await asyncio.sleep(0.5)
    assert stream.delivered < 8 * 1024 * 1024
    await terminal.type(b"\x03")
    terminal.reading.set()
    await terminal.run("echo done-$((5*5))", b"done-25")
    await terminal.events.put(None)
    await terminal.result()


@pytest.mark.asyncio
async def test_ctrl_c_interrupts_the_running_command(sshd):
    terminal = await login(sshd)
    # Announced by the command itself: by then it holds the terminal, so the
    # SIGINT is its own.
    await terminal.run("sh -c 'echo started-$((3*3)); exec sleep 100'", b"started-9")
    await terminal.type(b"\x03")
    await terminal.type(b"echo rc-$?\r")
    # 130: the shell saw its command end by SIGINT.
    await terminal.expect(rb"[\r\n]rc-130\r\n", timeout=5)
    await terminal.events.put(None)
    await terminal.result()


@pytest.mark.asyncio
async def test_it_opens_the_terminal_at_the_given_size_and_resizes_it(sshd):
    terminal = await login(sshd, SshOptions(cols=91, rows=27))
    await terminal.run("stty size", b"27 91")
    await terminal.events.put(Resize(cols=120, rows=40))
    await terminal.run("stty size", b"40 120")
    await terminal.events.put(None)
    await terminal.result()


@pytest.mark.asyncio
async def test_a_wrong_password_fails_without_revealing_it(sshd, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-password-4711"
    terminal = await connect(sshd.port, SshCredentials(sshd.user, password=wrong))
    result = await terminal.result()
    assert result.failed
    assert result.reason == "authentication failed: the SSH server refused the user name or password"
    assert wrong not in repr(result)
    assert wrong not in caplog.text
    assert wrong not in repr(SshCredentials(sshd.user, password=wrong))


@pytest.mark.asyncio
async def test_a_key_the_server_does_not_know_fails(sshd):
    unknown = generate_key_pair()
    terminal = await connect(sshd.port, SshCredentials(sshd.user, private_key=unknown.openssh))
    result = await terminal.result()
    assert result.failed
    assert result.reason == "authentication failed: the SSH server refused the key"


@pytest.mark.asyncio
@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
async def test_it_logs_in_when_the_pinned_host_key_matches(sshd, key_type):
    # An RSA key pinned for a server that also has Ed25519: it must ask for RSA.
    terminal = await login(sshd, SshOptions(host_key=sshd.host_keys[key_type]))
    await assert_it_logs_in(terminal)
    assert [state for state, _ in terminal.statuses] == ["authenticating", "connected"]


@pytest.mark.asyncio
async def test_a_pinned_host_key_that_does_not_match_fails_before_any_password_is_sent(sshd):
    pinned = generate_key_pair().public_openssh
    terminal = await connect(
        sshd.port, SshCredentials(sshd.user, password="a-wrong-password"), SshOptions(host_key=pinned)
    )
    result = await terminal.result()
    assert result.failed
    assert result.reason == (
        f"host key mismatch: expected {fingerprint(pinned)}, got {sshd.fingerprints['ed25519']}"
    )
    assert result.server_host_key == sshd.host_keys["ed25519"]
    assert terminal.statuses == []
    # sshd saw the connection end without any attempt to log in.
    pattern = rf"(?i)(closed|disconnect).* port {terminal.client_port}\b"
    await asyncio.to_thread(sshd.log.wait_for, pattern, TIMEOUT)
    assert [line for line in sshd.log_for(terminal.client_port) if re.search("(?i)password|user", line)] == []


@pytest.mark.asyncio
async def test_without_a_pinned_key_it_reports_the_servers_key(sshd):
    terminal = await login(sshd)
    await assert_it_logs_in(terminal)
    result = terminal.task.result()
    assert ("host-key", sshd.host_keys["ed25519"]) in terminal.statuses
    assert result.server_host_key == sshd.host_keys["ed25519"]
    assert not result.failed


@pytest.mark.asyncio
async def test_exit_in_the_shell_ends_the_session(sshd):
    terminal = await login(sshd)
    await terminal.run("echo ready-$((2*2))", b"ready-4")
    await terminal.type(b"exit 3\r")
    result = await terminal.result()
    assert result.reason == "the remote shell exited (exit status 3)"
    assert not result.failed


@pytest.mark.asyncio
async def test_closing_the_page_ends_the_session(sshd):
    terminal = await login(sshd)
    await terminal.run("echo ready-$((2*2))", b"ready-4")
    await terminal.events.put(None)
    result = await terminal.result()
    assert result.reason == "closed in the browser"
    assert not result.failed


@pytest.mark.asyncio
async def test_closing_the_page_while_connecting_ends_the_session(sshd):
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)  # says nothing
    async with server:
        terminal = await connect(server.sockets[0].getsockname()[1], SshCredentials("pi", password="x"))
        await terminal.events.put(None)
        result = await terminal.result()
    assert result.reason == "closed in the browser"


@pytest.mark.asyncio
async def test_the_session_ends_when_the_device_connection_is_lost(sshd):
    terminal = await login(sshd)
    await terminal.run("echo ready-$((2*2))", b"ready-4")
    terminal.stream.writer.transport.abort()
    result = await terminal.result()
    assert result.reason == "the connection to the device was lost"


@pytest.mark.asyncio
async def test_a_target_that_is_not_an_ssh_server_fails_clearly():
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0)
    async with server:
        terminal = await connect(server.sockets[0].getsockname()[1], SshCredentials("pi", password="x"))
        result = await terminal.result()
    assert result.failed
    assert result.reason == "the target did not answer as an SSH server (it sent 'hello')"


@pytest.mark.asyncio
async def test_a_silent_target_times_out():
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        terminal = await connect(port, SshCredentials("pi", password="x"), SshOptions(connect_timeout=0.5))
        result = await terminal.result()
    assert result.failed
    assert result.reason == "timed out waiting for the SSH server"
