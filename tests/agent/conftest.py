"""Fixtures for the agent's tests; the doubles themselves live in agent_fakes.py.

(Helpers are not imported from a conftest: tests/conftest.py may exist too,
and two modules named ``conftest`` cannot both be imported by name.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from agent.config import AgentConfig
from agent_fakes import (
    PASSWORD,
    SERIAL,
    USERNAME,
    WAIT,
    FakeGateway,
    HttpProxy,
    RegistrationServer,
    TcpTarget,
    echo,
    tcp_server,
)


@pytest.fixture(autouse=True)
def without_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy set in the developer's shell must not capture loopback traffic,
    # and its no_proxy must not make the proxy tests bypass their proxy.
    for name in ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy", "socks_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def registration_server() -> Iterator[RegistrationServer]:
    server = RegistrationServer()
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=WAIT)


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    server = FakeGateway()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def config(gateway: FakeGateway) -> AgentConfig:
    return AgentConfig(server=gateway.url, device_id=SERIAL, username=USERNAME, password=PASSWORD)


@pytest_asyncio.fixture
async def echo_target() -> AsyncIterator[TcpTarget]:
    async def handler(_t: TcpTarget, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await echo(reader, writer)

    async with tcp_server(handler) as target:
        yield target


@pytest_asyncio.fixture
async def recording_target() -> AsyncIterator[TcpTarget]:
    """Records what it receives and sets ``closed`` when the agent closes the connection."""

    async def handler(t: TcpTarget, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                t.received += data
        finally:
            t.closed.set()
            writer.close()

    async with tcp_server(handler) as target:
        yield target


@pytest_asyncio.fixture
async def closing_target() -> AsyncIterator[TcpTarget]:
    """Greets, then closes its side at once."""

    async def handler(_t: TcpTarget, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from the target\n")
        await writer.drain()
        writer.close()

    async with tcp_server(handler) as target:
        yield target


@pytest_asyncio.fixture
async def http_proxy() -> AsyncIterator[HttpProxy]:
    proxy = HttpProxy()
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
