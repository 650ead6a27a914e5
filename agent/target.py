"""Reaching the target on the device's LAN: resolve, check, connect.

The addresses checked against the allow-list are the very ones connected to
(by socket address, with no second lookup), so a DNS answer that changes
between the check and the connection cannot take the agent elsewhere.

Failures carry a reason meant for the person who clicked Connect, e.g.
"connection refused by 10.0.0.67:5900": it travels to the browser verbatim.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from dataclasses import dataclass

from agent.allowlist import AllowList, IPAddress

CONNECT_TIMEOUT = 10.0
RESOLVE_TIMEOUT = 10.0
NOT_ALLOWED = "target not allowed by the agent's allow-list"


class TargetError(Exception):
    """The target cannot be used; ``reason`` is for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ResolvedAddress:
    address: IPAddress
    family: int
    sockaddr: tuple


@dataclass(frozen=True)
class ResolvedTarget:
    host: str  # as the server sent it, brackets removed
    port: int
    addresses: tuple[ResolvedAddress, ...]

    @property
    def is_literal(self) -> bool:
        return _literal(self.host) is not None

    def describe(self) -> str:
        return _host_port(self.host, self.port)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve_allowed(host: str, port: int, allow: AllowList, timeout: float = RESOLVE_TIMEOUT) -> ResolvedTarget:
    """Resolve ``host`` and check every address against ``allow``; raise TargetError."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
            timeout,
        )
    except (socket.gaierror, UnicodeError):
        raise TargetError(f"cannot resolve {host}") from None
    except TimeoutError:
        raise TargetError(f"timed out resolving {host}") from None

    seen: set[tuple] = set()
    addresses: list[ResolvedAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6) or sockaddr in seen:
            continue
        seen.add(sockaddr)
        addresses.append(ResolvedAddress(ipaddress.ip_address(sockaddr[0]), family, sockaddr))
    if not addresses:
        raise TargetError(f"cannot resolve {host}")
    if not allow.permits(host, port, [a.address for a in addresses]):
        raise TargetError(NOT_ALLOWED)
    return ResolvedTarget(host, port, tuple(addresses))


def _failure_reason(target: ResolvedTarget, address: ResolvedAddress, exc: OSError) -> str:
    addr = str(address.address)
    if target.is_literal:
        where, who = target.describe(), target.host
    else:
        where, who = f"{target.describe()} ({addr})", f"{target.host} ({addr})"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return f"connection refused by {where}"
    if exc.errno == errno.EHOSTUNREACH:
        return f"no route to host {who}"
    if exc.errno == errno.ENETUNREACH:
        return f"network unreachable for {who}"
    return f"cannot connect to {where}: {exc.strerror or exc}"


async def _connect_one(address: ResolvedAddress) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address.sockaddr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Telnet servers send the IAC of a "Synch" (after Ctrl-C) as urgent
        # data, which Linux drops from the stream unless it is kept inline.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def connect_target(
    target: ResolvedTarget, timeout: float = CONNECT_TIMEOUT
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the checked addresses in turn; raise TargetError with the most telling reason."""

    async def attempt() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        failures: list[tuple[ResolvedAddress, OSError]] = []
        for address in target.addresses:
            try:
                return await _connect_one(address)
            except OSError as exc:
                failures.append((address, exc))
        # "Refused" proves the host is up and names the closed port: the most
        # useful of several failures (e.g. ::1 unreachable, 127.0.0.1 refused).
        refused = [f for f in failures if isinstance(f[1], ConnectionRefusedError)]
        address, exc = (refused or failures)[0]
        raise TargetError(_failure_reason(target, address, exc))

    try:
        return await asyncio.wait_for(attempt(), timeout)
    except TimeoutError:
        raise TargetError(f"timed out connecting to {target.describe()}") from None
