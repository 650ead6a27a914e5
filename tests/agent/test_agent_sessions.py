"""Connect requests end to end: fake gateway, real agent, real TCP targets on loopback."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agent.config import AgentConfig
from agent.control import Agent
from agent_fakes import PASSWORD, SERIAL, USERNAME, WAIT, FakeGateway, TcpTarget, basic, closed_port, exchange, running

MIB = 1024 * 1024


async def drain_until_closed(tunnel: ServerConnection) -> bytes:
    received = bytearray()
    try:
        while True:
            message = await asyncio.wait_for(tunnel.recv(), WAIT)
            assert isinstance(message, bytes)
            received += message
    except ConnectionClosed:
        return bytes(received)


@pytest.mark.asyncio
async def test_a_connect_request_reports_executing_then_successful_and_echoes_a_mebibyte_intact(
    gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget
) -> None:
    async with running(Agent(config)):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{echo_target.port},key-1,op-1")
        assert await control.expect() == ["504", "op-1"]
        tunnel = await gateway.tunnel("key-1")
        assert await control.expect() == ["506", "op-1"]

        assert tunnel.subprotocol == "binary"
        assert tunnel.request.headers["Authorization"] == basic(USERNAME, PASSWORD)
        payload = os.urandom(MIB)
        assert await exchange(tunnel, payload) == payload
        await tunnel.close()
    assert control.ws.request.headers["Authorization"] == basic(USERNAME, PASSWORD)
    assert control.ws.request.headers.get("Origin") is None


@pytest.mark.asyncio
async def test_a_refused_target_is_reported_with_a_reason_a_user_can_act_on(
    gateway: FakeGateway, config: AgentConfig
) -> None:
    port = closed_port()
    async with running(Agent(config)):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{port},key-2,op-2")
        assert await control.expect() == ["504", "op-2"]
        assert await control.expect() == ["505", "op-2", f"connection refused by 127.0.0.1:{port}"]
    assert control.raw[-1] == f'505,op-2,"connection refused by 127.0.0.1:{port}"'


@pytest.mark.asyncio
async def test_it_refuses_a_target_outside_the_allow_list_without_opening_anything(
    gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget
) -> None:
    # The echo target listens on an ephemeral port, never on 22.
    async with running(Agent(replace(config, allow=["127.0.0.1:22", "192.168.1.0/24:5900"]))):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{echo_target.port},key-3,op-3")
        assert await control.expect() == ["504", "op-3"]
        assert await control.expect() == ["505", "op-3", "target not allowed by the agent's allow-list"]
    assert gateway.tunnel_attempts == []
    assert echo_target.connections == 0


@pytest.mark.asyncio
async def test_it_refuses_a_hostname_that_resolves_outside_the_allow_list(
    gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget
) -> None:
    async with running(Agent(replace(config, allow=["127.0.0.2", "[::2]"]))):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},localhost,{echo_target.port},key-4,op-4")
        assert await control.expect() == ["504", "op-4"]
        assert await control.expect() == ["505", "op-4", "target not allowed by the agent's allow-list"]
    assert gateway.tunnel_attempts == []
    assert echo_target.connections == 0


@pytest.mark.asyncio
async def test_a_hostname_entry_lets_that_name_through(
    gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget
) -> None:
    async with running(Agent(replace(config, allow=[f"LOCALHOST:{echo_target.port}"]))):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},localhost,{echo_target.port},key-5,op-5")
        assert await control.expect() == ["504", "op-5"]
        tunnel = await gateway.tunnel("key-5")
        assert await control.expect() == ["506", "op-5"]
        assert await exchange(tunnel, b"hello") == b"hello"
        await tunnel.close()


@pytest.mark.asyncio
async def test_a_five_field_request_is_answered_with_501_then_503(
    gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget
) -> None:
    async with running(Agent(config)):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{echo_target.port},key-6")
        assert await control.expect() == ["501", "c8y_RemoteAccessConnect"]
        tunnel = await gateway.tunnel("key-6")
        assert await control.expect() == ["503", "c8y_RemoteAccessConnect"]
        assert await exchange(tunnel, b"old server") == b"old server"
        await tunnel.close()


@pytest.mark.asyncio
async def test_a_five_field_request_that_fails_is_answered_with_502(gateway: FakeGateway, config: AgentConfig) -> None:
    port = closed_port()
    async with running(Agent(config)):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{port},key-7")
        assert await control.expect() == ["501", "c8y_RemoteAccessConnect"]
        assert await control.expect() == ["502", "c8y_RemoteAccessConnect", f"connection refused by 127.0.0.1:{port}"]


@pytest.mark.asyncio
async def test_a_tunnel_refused_by_the_server_is_reported_and_the_target_connection_closed(
    gateway: FakeGateway, config: AgentConfig, recording_target: TcpTarget
) -> None:
    gateway.refused_keys.add("key-8")
    async with running(Agent(config)):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{recording_target.port},key-8,op-8")
        assert await control.expect() == ["504", "op-8"]
        assert await control.expect() == ["505", "op-8", "tunnel refused by the server (HTTP 403)"]
        # Opened concurrently with the tunnel, the TCP connection must not linger.
        if recording_target.connections:
            await asyncio.wait_for(recording_target.closed.wait(), WAIT)


@pytest.mark.asyncio
async def test_a_text_frame_on_the_tunnel_ends_the_session_and_closes_the_tcp_side(
    gateway: FakeGateway, config: AgentConfig, recording_target: TcpTarget
) -> None:
    async with running(Agent(config)) as agent_task:
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{recording_target.port},key-9,op-9")
        tunnel = await gateway.tunnel("key-9")
        assert await control.expect() == ["504", "op-9"]
        assert await control.expect() == ["506", "op-9"]
        await tunnel.send(b"before")
        await tunnel.send("## Shutdown ##")
        await tunnel.send(b"after")
        await asyncio.wait_for(recording_target.closed.wait(), WAIT)
        await asyncio.wait_for(tunnel.wait_closed(), WAIT)
        assert not agent_task.done()
    assert bytes(recording_target.received) == b"before"


@pytest.mark.asyncio
async def test_the_tunnel_closes_when_the_target_closes_the_connection(
    gateway: FakeGateway, config: AgentConfig, closing_target: TcpTarget
) -> None:
    async with running(Agent(config)):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{closing_target.port},key-10,op-10")
        tunnel = await gateway.tunnel("key-10")
        assert await drain_until_closed(tunnel) == b"hello from the target\n"
        assert tunnel.close_code == 1000


@pytest.mark.asyncio
async def test_many_sessions_run_at_once(gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget) -> None:
    async with running(Agent(config)):
        control = await gateway.next_control()
        for i in range(5):
            await control.send(f"530,{SERIAL},127.0.0.1,{echo_target.port},many-{i},m{i}")
        tunnels = [await gateway.tunnel(f"many-{i}") for i in range(5)]
        payloads = [os.urandom(100_000) for _ in tunnels]
        echoed = await asyncio.gather(*(exchange(t, p) for t, p in zip(tunnels, payloads, strict=True)))
        assert echoed == payloads
        statuses = [await control.expect() for _ in range(10)]
        for i in range(5):
            assert statuses.index(["504", f"m{i}"]) < statuses.index(["506", f"m{i}"])
        for t in tunnels:
            await t.close()
