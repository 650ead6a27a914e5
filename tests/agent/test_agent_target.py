"""Reaching a target: resolution, the allow-list check, and reasons for failures.

Only loopback is ever connected to; other failures are produced by
replacing the socket connect, not by sending anything anywhere.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

import pytest

from agent import target as target_module
from agent.allowlist import AllowList
from agent.target import NOT_ALLOWED, TargetError, connect_target, resolve_allowed
from agent_fakes import WAIT, TcpTarget, closed_port


@pytest.mark.asyncio
async def test_a_name_is_refused_when_it_resolves_outside_the_allow_list() -> None:
    with pytest.raises(TargetError) as info:
        await resolve_allowed("localhost", 22, AllowList.parse(["127.0.0.2", "[::2]"]))
    assert info.value.reason == NOT_ALLOWED


@pytest.mark.asyncio
async def test_an_unresolvable_name_says_so() -> None:
    with pytest.raises(TargetError) as info:
        await resolve_allowed("no-such-host.invalid", 22, AllowList())
    assert info.value.reason == "cannot resolve no-such-host.invalid"


@pytest.mark.asyncio
async def test_the_agent_connects_to_the_address_it_checked_without_resolving_again(
    echo_target: TcpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebinding DNS server answers an allowed address first and another one
    # after: the agent must use the first answer for the connection itself.
    loop = asyncio.get_running_loop()
    answers = ["127.0.0.1", "127.0.0.2"]
    calls: list[str] = []

    async def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(host)
        address = answers[min(len(calls), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    target = await resolve_allowed("plc.test", echo_target.port, AllowList.parse([f"127.0.0.1:{echo_target.port}"]))
    reader, writer = await connect_target(target, timeout=WAIT)
    try:
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"
        assert writer.get_extra_info("peername")[0] == "127.0.0.1"
    finally:
        writer.close()
    assert calls == ["plc.test"]
    assert echo_target.connections == 1


@pytest.mark.asyncio
async def test_a_target_that_does_not_answer_times_out_with_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_answers(address):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()

    monkeypatch.setattr(target_module, "_connect_one", never_answers)
    target = await resolve_allowed("127.0.0.1", 5900, AllowList())
    with pytest.raises(TargetError) as info:
        await connect_target(target, timeout=0.05)
    assert info.value.reason == "timed out connecting to 127.0.0.1:5900"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "host, error, reason",
    [
        ("127.0.0.1", errno.EHOSTUNREACH, "no route to host 127.0.0.1"),
        ("127.0.0.1", errno.ENETUNREACH, "network unreachable for 127.0.0.1"),
        ("::1", errno.ECONNREFUSED, "connection refused by [::1]:5900"),
        ("127.0.0.1", errno.EACCES, "cannot connect to 127.0.0.1:5900: Permission denied"),
    ],
)
async def test_connection_failures_are_told_in_words_a_user_can_act_on(
    host: str, error: int, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fails(address):  # type: ignore[no-untyped-def]
        exc_type = ConnectionRefusedError if error == errno.ECONNREFUSED else OSError
        raise exc_type(error, os.strerror(error))

    monkeypatch.setattr(target_module, "_connect_one", fails)
    target = await resolve_allowed(host, 5900, AllowList())
    with pytest.raises(TargetError) as info:
        await connect_target(target, timeout=WAIT)
    assert info.value.reason == reason


@pytest.mark.asyncio
async def test_a_name_that_resolves_to_several_addresses_is_tried_on_each(echo_target: TcpTarget) -> None:
    # localhost may resolve to ::1 first, where nothing listens: the agent
    # must fall back to 127.0.0.1 rather than fail.
    target = await resolve_allowed("localhost", echo_target.port, AllowList())
    reader, writer = await connect_target(target, timeout=WAIT)
    try:
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), WAIT) == b"x"
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_a_refused_name_reports_the_address_it_tried() -> None:
    port = closed_port()
    target = await resolve_allowed("localhost", port, AllowList.parse(["localhost"]))
    with pytest.raises(TargetError) as info:
        await connect_target(target, timeout=WAIT)
    assert info.value.reason.startswith(f"connection refused by localhost:{port} (")
