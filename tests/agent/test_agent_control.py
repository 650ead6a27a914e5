"""The control channel: reconnects, refused credentials, server errors, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import AgentConfig, save_config
from agent.control import Agent, Backoff, CredentialsRefused, Outbox
from agent_fakes import REPO_ROOT, SERIAL, WAIT, FakeGateway, TcpTarget, exchange, fast_backoff, running


def test_the_back_off_doubles_from_one_second_up_to_a_minute_and_resets() -> None:
    no_jitter = Backoff(rng=lambda: 0.0)
    assert [no_jitter.next() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    no_jitter.reset()
    assert no_jitter.next() == 1

    full_jitter = Backoff(rng=lambda: 1.0)
    assert [full_jitter.next() for _ in range(3)] == [0.5, 1, 2]


class RecordingBackoff(Backoff):
    def __init__(self) -> None:
        super().__init__(initial=0.01, maximum=0.08, rng=lambda: 0.0)
        self.delays: list[float] = []

    def next(self) -> float:
        self.delays.append(super().next())
        return self.delays[-1]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "stable_after, delays",
    [(0.0, [0.01, 0.01, 0.01]), (3600.0, [0.01, 0.02, 0.04])],
    ids=["after-a-connection-that-stayed-up", "after-short-lived-connections"],
)
async def test_the_back_off_resets_only_after_a_connection_that_stayed_up(
    gateway: FakeGateway, config: AgentConfig, stable_after: float, delays: list[float]
) -> None:
    backoff = RecordingBackoff()
    async with running(Agent(config, backoff=backoff, stable_after=stable_after)):
        for _ in range(3):
            control = await gateway.next_control()
            await control.ws.close()
        await gateway.next_control()
    assert backoff.delays == delays


@pytest.mark.asyncio
async def test_the_outbox_keeps_a_line_until_it_was_sent() -> None:
    outbox = Outbox()
    waiter = asyncio.create_task(outbox.first())
    outbox.put("504,1")
    outbox.put("506,1")
    assert await asyncio.wait_for(waiter, WAIT) == "504,1"
    assert await outbox.first() == "504,1"  # not yet popped: a failed send keeps it
    outbox.pop()
    assert await outbox.first() == "506,1"


@pytest.mark.asyncio
async def test_the_agent_reconnects_after_the_control_channel_drops_and_live_sessions_keep_flowing(
    gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent")
    async with running(Agent(config, backoff=fast_backoff())):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,{echo_target.port},live,op-live")
        tunnel = await gateway.tunnel("live")
        assert await control.expect() == ["504", "op-live"]
        assert await control.expect() == ["506", "op-live"]
        assert await exchange(tunnel, b"before the drop") == b"before the drop"

        # Drop the channel and keep the server unavailable for a while (as
        # during a restart): the agent retries, and the tunnel keeps working.
        gateway.control_status = 503
        await control.ws.close(1012, "restarting")
        for _ in range(2):
            assert await asyncio.wait_for(gateway.control_refusals.get(), WAIT) == 503
        payload = os.urandom(256 * 1024)
        assert await exchange(tunnel, payload) == payload

        gateway.control_status = None
        second = await gateway.next_control()
        await second.send(f"530,{SERIAL},127.0.0.1,{echo_target.port},after,op-after")
        assert await second.expect() == ["504", "op-after"]
        assert await second.expect() == ["506", "op-after"]
        assert await exchange(tunnel, b"after the reconnect") == b"after the reconnect"
        await tunnel.close()
        await (await gateway.tunnel("after")).close()

    retries = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert retries and "the server answered HTTP 503" in " ".join(retries)


@pytest.mark.asyncio
async def test_status_lines_written_while_the_channel_is_down_are_sent_after_the_reconnect(
    gateway: FakeGateway, config: AgentConfig
) -> None:
    agent = Agent(config, backoff=fast_backoff())
    async with running(agent):
        control = await gateway.next_control()
        gateway.control_status = 503
        await control.ws.close()
        await asyncio.wait_for(gateway.control_refusals.get(), WAIT)
        agent.report("506,queued-while-down")
        gateway.control_status = None
        second = await gateway.next_control()
        assert await second.expect() == ["506", "queued-while-down"]


@pytest.mark.asyncio
async def test_refused_credentials_stop_the_agent_instead_of_retrying(
    gateway: FakeGateway, config: AgentConfig
) -> None:
    agent = Agent(replace(config, password="wrong"), backoff=fast_backoff())
    with pytest.raises(CredentialsRefused, match="the device's credentials were refused: register again"):
        await asyncio.wait_for(agent.run(), WAIT)
    assert gateway.controls.empty()


@pytest.mark.asyncio
async def test_err_lines_from_the_server_are_logged_as_warnings(
    gateway: FakeGateway, config: AgentConfig, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(Agent(config)):
        control = await gateway.next_control()
        await control.send('ERR,"unknown operation 99"')
        # A line that round-trips proves the ERR line was handled before it.
        await control.send(f"530,{SERIAL},127.0.0.1,1,probe,op-probe")
        assert await control.expect() == ["504", "op-probe"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "the server refused a line: unknown operation 99" in warnings


@pytest.mark.asyncio
async def test_an_invalid_connect_request_is_failed_by_operation_id(gateway: FakeGateway, config: AgentConfig) -> None:
    async with running(Agent(config)):
        control = await gateway.next_control()
        await control.send(f"530,{SERIAL},127.0.0.1,not-a-port,bad,op-bad")
        assert await control.expect() == [
            "505",
            "op-bad",
            "invalid connect request: connect request with invalid port 'not-a-port'",
        ]


@pytest.mark.asyncio
async def test_a_repeated_connect_request_for_the_same_key_is_ignored(
    gateway: FakeGateway, config: AgentConfig, echo_target: TcpTarget
) -> None:
    async with running(Agent(config)):
        control = await gateway.next_control()
        request = f"530,{SERIAL},127.0.0.1,{echo_target.port},once,op-once"
        await control.send(request)
        await control.send(request)
        # Frames are handled in order, so the probe's first line comes after
        # any line the repeated request would have caused.
        await control.send(f"530,{SERIAL},127.0.0.1,1,probe,op-probe")
        lines = []
        while (line := await control.expect()) != ["504", "op-probe"]:
            lines.append(line)
        assert lines.count(["504", "op-once"]) == 1
        await (await gateway.tunnel("once")).close()
    assert gateway.tunnel_attempts.count("once") == 1


async def run_cli(config_path: Path, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "run",
        "--config",
        str(config_path),
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.asyncio
async def test_run_exits_with_a_message_when_the_credentials_are_refused(
    gateway: FakeGateway, config: AgentConfig, tmp_path: Path
) -> None:
    path = tmp_path / "agent.toml"
    save_config(replace(config, password="revoked"), path)
    process = await run_cli(path)
    _, err = await asyncio.wait_for(process.communicate(), 3 * WAIT)
    assert process.returncode == 1
    assert "the device's credentials were refused: register again" in err.decode()


@pytest.mark.asyncio
async def test_run_stops_cleanly_on_sigterm_closing_its_sessions(
    gateway: FakeGateway, config: AgentConfig, recording_target: TcpTarget, tmp_path: Path
) -> None:
    path = tmp_path / "agent.toml"
    save_config(config, path)
    process = await run_cli(path, "-v")
    try:
        control = await gateway.next_control(timeout=3 * WAIT)
        await control.send(f"530,{SERIAL},127.0.0.1,{recording_target.port},term,op-term")
        tunnel = await gateway.tunnel("term")
        assert await control.expect() == ["504", "op-term"]
        assert await control.expect() == ["506", "op-term"]
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 3 * WAIT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert "stopped" in err.decode()
    await asyncio.wait_for(control.ws.wait_closed(), WAIT)
    await asyncio.wait_for(tunnel.wait_closed(), WAIT)
    await asyncio.wait_for(recording_target.closed.wait(), WAIT)
    # "Going away": the server can tell a shutdown from a crash.
    assert control.ws.close_code == 1001
    assert tunnel.close_code == 1001
