"""The allow-list: parsing and matching.

Addresses outside loopback appear here only as strings being matched: no
test sends anything to them.
"""

from __future__ import annotations

import ipaddress

import pytest

from agent.allowlist import AllowList, parse_entry


def ips(*texts: str) -> list:
    return [ipaddress.ip_address(t) for t in texts]


def test_an_empty_allow_list_allows_every_target() -> None:
    allow = AllowList.parse([])
    assert allow.allows_all
    assert allow.permits("anything.example", 1234, ips("203.0.113.9"))


def test_a_cidr_entry_with_a_port_allows_that_network_on_that_port_only() -> None:
    allow = AllowList.parse(["192.168.1.0/24:5900"])
    assert allow.permits("192.168.1.77", 5900, ips("192.168.1.77"))
    assert not allow.permits("192.168.1.77", 22, ips("192.168.1.77"))
    assert not allow.permits("192.168.2.1", 5900, ips("192.168.2.1"))


def test_an_address_without_a_port_allows_every_port() -> None:
    allow = AllowList.parse(["10.0.0.5"])
    assert allow.permits("10.0.0.5", 22, ips("10.0.0.5"))
    assert allow.permits("10.0.0.5", 5900, ips("10.0.0.5"))
    assert not allow.permits("10.0.0.6", 22, ips("10.0.0.6"))


def test_ipv6_entries_take_brackets_for_a_port_and_may_be_networks() -> None:
    allow = AllowList.parse(["[::1]:22", "[fd00::/8]", "fe80::/10"])
    assert allow.permits("::1", 22, ips("::1"))
    assert not allow.permits("::1", 23, ips("::1"))
    assert allow.permits("fd12::3", 443, ips("fd12::3"))
    assert allow.permits("fe80::1", 80, ips("fe80::1"))
    assert not allow.permits("2001:db8::1", 22, ips("2001:db8::1"))


def test_an_ipv4_mapped_ipv6_address_is_judged_by_its_ipv4_address() -> None:
    allow = AllowList.parse(["127.0.0.1:22"])
    assert allow.permits("::ffff:127.0.0.1", 22, ips("::ffff:127.0.0.1"))
    assert not AllowList.parse(["10.0.0.0/8"]).permits("::ffff:127.0.0.1", 22, ips("::ffff:127.0.0.1"))


def test_a_hostname_entry_matches_the_name_case_insensitively_whatever_it_resolves_to() -> None:
    allow = AllowList.parse(["plc.local:23"])
    assert allow.permits("PLC.Local", 23, ips("192.0.2.10"))
    assert allow.permits("plc.local.", 23, ips("192.0.2.10"))
    assert not allow.permits("plc.local", 22, ips("192.0.2.10"))
    assert not allow.permits("other.local", 23, ips("192.0.2.10"))


def test_a_name_passes_through_address_entries_only_if_every_address_it_resolves_to_is_allowed() -> None:
    allow = AllowList.parse(["192.168.1.0/24"])
    assert allow.permits("nas.lan", 445, ips("192.168.1.4", "192.168.1.5"))
    assert not allow.permits("nas.lan", 445, ips("192.168.1.4", "198.51.100.7"))
    assert not allow.permits("nas.lan", 445, [])


def test_a_wildcard_host_allows_any_host_on_its_port() -> None:
    allow = AllowList.parse(["*:22"])
    assert allow.permits("anything", 22, ips("198.51.100.1"))
    assert not allow.permits("anything", 23, ips("198.51.100.1"))
    assert AllowList.parse(["*"]).permits("anything", 9, ips("198.51.100.1"))


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "   ",
        "host:",
        ":22",
        "host:0",
        "host:65536",
        "host:ssh",
        "10.0.0.0/33",
        "300.1.2.3",
        "[::1",
        "[::1]22",
        "[10.0.0.1]:22",
        "bad host",
        "under_score-.example",
        "fe80::zz",
    ],
)
def test_a_malformed_entry_raises_a_value_error_naming_the_entry(entry: str) -> None:
    with pytest.raises(ValueError) as info:
        AllowList.parse(["127.0.0.1", entry])
    assert repr(entry) in str(info.value)


def test_parsed_entries_keep_what_they_mean() -> None:
    assert parse_entry("PLC.local:23").hostname == "plc.local"
    assert parse_entry("PLC.local:23").port == 23
    assert parse_entry("*").any_host and parse_entry("*").port is None
    assert str(parse_entry("192.168.1.9/24").network) == "192.168.1.0/24"
    assert str(parse_entry("[::1]:22").network) == "::1/128"
