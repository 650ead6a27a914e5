"""TLS options and the proxy from the environment, for registration and for the agent.

The proxy and the TLS servers are ours, on loopback.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from agent import cli
from agent.config import AgentConfig
from agent.control import Agent
from agent.transport import build_ssl_context
from agent_fakes import (
    SERIAL,
    WAIT,
    FakeGateway,
    HttpProxy,
    RegistrationServer,
    TcpTarget,
    exchange,
    fast_backoff,
    make_certificate,
    running,
    server_ssl_context,
    watching_logs,
)


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tls"
    directory.mkdir()
    make_certificate(directory)
    return directory


@pytest_asyncio.fixture
async def tls_gateway(tls_dir: Path) -> AsyncIterator[FakeGateway]:
    server = FakeGateway()
    await server.start(server_ssl_context(tls_dir))
    try:
        yield server
    finally:
        await server.stop()


async def check_a_session_works(gateway: FakeGateway, target: TcpTarget, key: str) -> None:
    control = await gateway.next_control()
    await control.send(f"530,{SERIAL},127.0.0.1,{target.port},{key},op-{key}")
    tunnel = await gateway.tunnel(key)
    assert await exchange(tunnel, b"through " + key.encode()) == b"through " + key.encode()
    assert await control.expect() == ["504", f"op-{key}"]
    assert await control.expect() == ["506", f"op-{key}"]
    await tunnel.close()


@pytest.mark.asyncio
async def test_the_agent_reaches_the_server_through_the_proxy_in_the_environment(
    gateway: FakeGateway,
    config: AgentConfig,
    echo_target: TcpTarget,
    http_proxy: HttpProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("http_proxy", http_proxy.url)
    async with running(Agent(config)):
        await check_a_session_works(gateway, echo_target, "proxied")
    server = gateway.url.split("://", 1)[1]
    assert http_proxy.requests == [f"CONNECT {server}", f"CONNECT {server}"]


@pytest.mark.asyncio
async def test_register_goes_through_the_proxy_in_the_environment(
    registration_server: RegistrationServer, http_proxy: HttpProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", http_proxy.url)
    args = [
        "register",
        "--server",
        registration_server.url,
        "--device-id",
        SERIAL,
        "--one-time-password",
        registration_server.one_time_password,
        "--config",
        str(tmp_path / "agent.toml"),
    ]
    # urllib blocks: run it beside the event loop that serves the proxy.
    assert await asyncio.wait_for(asyncio.to_thread(cli.main, args), 2 * WAIT) == 0
    assert http_proxy.requests == [f"POST {registration_server.url}/service/remoteaccess/registration"]


@pytest.mark.asyncio
async def test_the_agent_refuses_an_unknown_certificate_and_accepts_it_from_the_ca_file(
    tls_gateway: FakeGateway, tls_dir: Path, config: AgentConfig, echo_target: TcpTarget
) -> None:
    tls_config = replace(config, server=tls_gateway.url)
    with watching_logs("agent.control") as logs:
        async with running(Agent(tls_config, backoff=fast_backoff())):
            message = await logs.wait_for("reconnecting in")
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert tls_gateway.controls.empty()

    context = build_ssl_context(ca_file=str(tls_dir / "cert.pem"))
    async with running(Agent(tls_config, ssl_context=context)):
        await check_a_session_works(tls_gateway, echo_target, "verified")


@pytest.mark.asyncio
async def test_the_agent_skips_verification_when_insecure(
    tls_gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget
) -> None:
    tls_config = replace(config, server=tls_gateway.url)
    async with running(Agent(tls_config, ssl_context=build_ssl_context(insecure=True))):
        await check_a_session_works(tls_gateway, echo_target, "insecure")


def test_register_over_https_honours_ca_file_and_insecure(
    tls_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = RegistrationServer(ssl_context=server_ssl_context(tls_dir))
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        path = tmp_path / "agent.toml"
        args = [
            "register",
            "--server",
            server.url,
            "--device-id",
            SERIAL,
            "--one-time-password",
            server.one_time_password,
            "--config",
            str(path),
        ]
        assert cli.main(args) == 1
        assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
        assert not path.exists()

        assert cli.main([*args, "--ca-file", str(tls_dir / "cert.pem")]) == 0
        assert path.exists()

        server.used = False
        assert cli.main([*args, "--insecure"]) == 0
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=WAIT)
