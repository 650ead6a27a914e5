"""The allow-list: which targets on the device's LAN the server may reach.

The device owner writes it in the agent's configuration, and the agent
enforces it whatever the server asks, so a compromised or misconfigured
server cannot use the device to reach arbitrary hosts.

Entries (each with an optional ``:port``; no port means any port):

* ``*``                       any host
* ``plc.local``               a host name, matched case-insensitively
* ``10.0.0.5``, ``[::1]``     one address (IPv6 in brackets when a port follows)
* ``192.168.1.0/24``, ``[fd00::/8]``  a network

A name target passes when a name entry matches it, or when *every* address
it resolves to is covered by an address or network entry: otherwise a name
whose DNS answer mixes an allowed and a forbidden address would slip past.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")


@dataclass(frozen=True)
class AllowEntry:
    """One parsed entry; exactly one of ``any_host``, ``hostname``, ``network`` is set."""

    text: str
    any_host: bool = False
    hostname: str | None = None
    network: IPNetwork | None = None
    port: int | None = None  # None: any port

    def allows_port(self, port: int) -> bool:
        return self.port is None or self.port == port

    def covers_address(self, address: IPAddress, port: int) -> bool:
        if not self.allows_port(port):
            return False
        if self.any_host:
            return True
        if self.network is None:
            return False
        return any(a in self.network for a in _address_forms(address))


def _address_forms(address: IPAddress) -> list[IPAddress]:
    # ::ffff:10.0.0.5 reaches 10.0.0.5, so an IPv4 entry must judge it too.
    forms: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        forms.append(address.ipv4_mapped)
    return forms


def normalize_hostname(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _parse_port(entry: str, text: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"invalid allow-list entry {entry!r}: port must be 1-65535 or *, not {text!r}")
    return int(text)


def _parse_ip(entry: str, text: str) -> IPNetwork | None:
    """An address or network, or None when ``text`` is not IP syntax at all."""
    try:
        if "/" in text:
            # strict=False: "192.168.1.7/24" is how people write "this LAN".
            return ipaddress.ip_network(text, strict=False)
        return ipaddress.ip_network(ipaddress.ip_address(text))
    except ValueError:
        if "/" in text or ":" in text or re.fullmatch(r"[0-9.]+", text):
            raise ValueError(
                f"invalid allow-list entry {entry!r}: {text!r} is not a valid address or network"
            ) from None
        return None


def parse_entry(entry: str) -> AllowEntry:
    """Parse one entry; raise ValueError naming the entry when it is malformed."""
    if not isinstance(entry, str):
        raise ValueError(f"invalid allow-list entry {entry!r}: must be a string")
    text = entry.strip()
    if not text:
        raise ValueError(f"invalid allow-list entry {entry!r}: empty")

    port: int | None = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"invalid allow-list entry {entry!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":") or len(rest) == 1:
                raise ValueError(f"invalid allow-list entry {entry!r}: expected ':port' after ']'")
            port = _parse_port(entry, rest[1:])
        network = _parse_ip(entry, host)
        if network is None or network.version != 6:
            raise ValueError(f"invalid allow-list entry {entry!r}: brackets are for IPv6 addresses")
        return AllowEntry(text=entry, network=network, port=port)

    if text.count(":") == 1:
        text, port_text = text.split(":")
        if not text or not port_text:
            raise ValueError(f"invalid allow-list entry {entry!r}: expected host:port")
        port = _parse_port(entry, port_text)
    # With several colons it is a bare IPv6 address or network and has no
    # port: "[::1]:22" is the way to give one.

    if text == "*":
        return AllowEntry(text=entry, any_host=True, port=port)
    network = _parse_ip(entry, text)
    if network is not None:
        return AllowEntry(text=entry, network=network, port=port)
    if not _HOSTNAME.match(text) or len(text) > 253:
        raise ValueError(f"invalid allow-list entry {entry!r}: {text!r} is not a host name, address or network")
    return AllowEntry(text=entry, hostname=normalize_hostname(text), port=port)


class AllowList:
    """Parsed allow-list; an empty one allows every target."""

    def __init__(self, entries: Iterable[AllowEntry] = ()) -> None:
        self.entries: tuple[AllowEntry, ...] = tuple(entries)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        return cls(parse_entry(e) for e in entries)

    @property
    def allows_all(self) -> bool:
        return not self.entries

    def permits(self, host: str, port: int, addresses: Sequence[IPAddress]) -> bool:
        """Whether connecting to ``addresses`` (what ``host`` resolved to) on ``port`` is allowed."""
        if self.allows_all:
            return True
        name = normalize_hostname(host).strip("[]")
        for entry in self.entries:
            if entry.allows_port(port) and (entry.any_host or entry.hostname == name):
                return True
        if not addresses:
            return False
        return all(any(e.covers_address(a, port) for e in self.entries) for a in addresses)

    def __repr__(self) -> str:
        return f"AllowList({[e.text for e in self.entries]!r})"
