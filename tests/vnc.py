"""A real VNC server on loopback for tests: x11vnc showing an Xvfb screen of
320x240 painted red (#ff0000), with no password or with a VNC password.

Needs Debian's `xvfb`, `x11vnc` and `x11-xserver-utils` (xsetroot); .ci/run
installs them. Without them a test skips, except under CI, where it fails.
`VncServer.pixel` reads the screen from the X server itself (GetImage over
its Unix socket), so a test can tell what VNC shows from what is there.
"""

import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.live import free_port, need, wait_for_port

WIDTH, HEIGHT = 320, 240
RED = (255, 0, 0)
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class VncServer:
    host: str
    port: int
    display: int
    password: str  # "" when the server asks for none

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        """The colour of the screen's pixel at (x, y), as (red, green, blue)."""
        return x11_pixel(self.display, x, y)


@contextmanager
def vnc_server(password: str = "", passwd_option: bool = False) -> Iterator[VncServer]:
    """x11vnc on a free loopback port. With a password, it comes from a file
    made by `x11vnc -storepasswd` (`-rfbauth`), or from `-passwd` on the
    command line if `passwd_option`."""
    xvfb, x11vnc, xsetroot = need("Xvfb"), need("x11vnc"), need("xsetroot")
    with tempfile.TemporaryDirectory(prefix="vnc-") as folder, ExitStack() as processes:
        log_path = Path(folder) / "server.log"
        log = processes.enter_context(open(log_path, "wb"))
        display = processes.enter_context(_xvfb(xvfb, log))
        subprocess.run([xsetroot, "-display", f":{display}", "-solid", "#ff0000"], check=True, timeout=START_TIMEOUT)

        port = free_port()
        command = [x11vnc, "-display", f":{display}", "-rfbport", str(port), "-localhost", "-forever", "-shared",
                   "-noxdamage"]
        if not password:
            command.append("-nopw")
        elif passwd_option:
            command += ["-passwd", password]
        else:
            stored = str(Path(folder) / "passwd")
            subprocess.run([x11vnc, "-storepasswd", password, stored], check=True, timeout=START_TIMEOUT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            command += ["-rfbauth", stored]
        server = _start(command, stdout=log, stderr=log)
        processes.callback(_stop, server)
        try:
            wait_for_port(port, server, timeout=START_TIMEOUT)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}; the servers said:\n{_tail(log_path)}") from None
        yield VncServer("127.0.0.1", port, display, password)


@contextmanager
def _xvfb(program: str, log: IO[bytes]) -> Iterator[int]:
    """Xvfb on the first free display (it picks one itself and writes its
    number once it is ready); stopped on exit."""
    ready, announce = os.pipe()
    try:
        process = _start(
            [program, "-displayfd", str(announce), "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-nolisten", "tcp",
             "-noreset"],  # without it, the screen goes back to black when xsetroot leaves
            pass_fds=(announce,), stdout=log, stderr=log,
        )
    finally:
        os.close(announce)
    try:
        with os.fdopen(ready, "rb") as announced:
            if not select.select([announced], [], [], START_TIMEOUT)[0]:
                raise TimeoutError(f"Xvfb did not start within {START_TIMEOUT} s")
            line = announced.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"Xvfb did not start: {_tail(Path(log.name))}")
        display = int(line)
        socket_path = Path(f"/tmp/.X11-unix/X{display}")
        deadline = time.monotonic() + START_TIMEOUT
        while not socket_path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{socket_path} did not appear within {START_TIMEOUT} s")
            time.sleep(0.02)
        yield display
    finally:
        _stop(process)


def _start(command: list[str], **options) -> subprocess.Popen:
    return subprocess.Popen(command, start_new_session=True, **options)


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def x11_pixel(display: int, x: int, y: int, timeout: float = 10.0) -> tuple[int, int, int]:
    """One pixel of the root window, read with the core protocol's GetImage
    (no Xlib needed): connect without authorisation (a local Xvfb started
    without -auth allows it), find the root window and its visual's colour
    masks in the setup reply, ask for a 1x1 ZPixmap."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(f"/tmp/.X11-unix/X{display}")
        sock.sendall(struct.pack("<BxHHHHxx", ord("l"), 11, 0, 0, 0))
        head = _recv(sock, 8)
        if head[0] != 1:
            raise RuntimeError(f"the X server refused the connection: {_recv(sock, head[1]).decode(errors='replace')}")
        setup = _recv(sock, struct.unpack_from("<H", head, 6)[0] * 4)
        vendor_length, = struct.unpack_from("<H", setup, 16)
        screens, formats = setup[20], setup[21]
        offset = 32 + (vendor_length + 3) // 4 * 4 + 8 * formats
        assert screens >= 1
        root, = struct.unpack_from("<I", setup, offset)
        root_visual, = struct.unpack_from("<I", setup, offset + 32)
        depths = setup[offset + 39]
        offset += 40
        masks = None
        for _ in range(depths):
            visuals, = struct.unpack_from("<H", setup, offset + 2)
            offset += 8
            for _ in range(visuals):
                visual_id, red, green, blue = struct.unpack_from("<I4xIII", setup, offset)
                if visual_id == root_visual:
                    masks = (red, green, blue)
                offset += 24
        if masks is None:
            raise RuntimeError("the root visual is not in the X server's setup")
        # GetImage: opcode 73, format ZPixmap (2), length 5 words.
        sock.sendall(struct.pack("<BBHIhhHHI", 73, 2, 5, root, x, y, 1, 1, 0xFFFFFFFF))
        reply = _recv(sock, 32)
        if reply[0] != 1:
            raise RuntimeError(f"GetImage failed with X error {reply[1]}")
        data = _recv(sock, struct.unpack_from("<I", reply, 4)[0] * 4)
        value = int.from_bytes(data[:4], "big" if setup[22] else "little")  # the image byte order
        return tuple(_channel(value, mask) for mask in masks)  # type: ignore[return-value]


def _channel(value: int, mask: int) -> int:
    shift = (mask & -mask).bit_length() - 1
    top = mask >> shift
    return ((value & mask) >> shift) * 255 // top if top else 0


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the X server closed the connection")
        data += chunk
    return data
