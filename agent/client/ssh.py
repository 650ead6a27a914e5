"""``connect ssh``: the proxy on a free loopback port, and OpenSSH's ``ssh`` through it."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
from collections.abc import Sequence

from agent.client.link import ClientError, Link, Target
from agent.client.proxy import Proxy, open_tunnel

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def ssh_command(
    program: str, port: int, target: Target, user: str, options: Sequence[str], command: Sequence[str]
) -> list[str]:
    # Every endpoint has its own host key, and the port changes every time:
    # the alias makes known_hosts remember the key per endpoint.
    argv = [program, "-p", str(port), "-o", f"HostKeyAlias={target.device_id}-{target.config_id}", *options]
    argv.append(f"{user}@{LOOPBACK}")
    if command:
        argv += ["--", *command]
    return argv


def ssh_options(identity: Sequence[str], options: Sequence[str]) -> list[str]:
    out: list[str] = []
    for path in identity:
        out += ["-i", path]
    for option in options:
        out += ["-o", option]
    return out


async def connect_ssh(link: Link, target: Target, user: str, options: Sequence[str], command: Sequence[str]) -> int:
    """Run ssh through a tunnel to ``target``; return ssh's exit code (1 when the tunnel was refused)."""
    program = shutil.which("ssh")
    if program is None:
        raise ClientError("the OpenSSH client `ssh` is not installed (Debian: apt install openssh-client)")
    # Opened before ssh starts, so that a refusal is told plainly rather
    # than as ssh's "connection closed by remote host".
    first = await open_tunnel(link, target)
    proxy = Proxy(link, target, first=first)
    try:
        port = await proxy.start(LOOPBACK, 0)
        argv = ssh_command(program, port, target, user, options, command)
        logger.debug("running %s", " ".join(argv))
        process = await asyncio.create_subprocess_exec(*argv)
        loop = asyncio.get_running_loop()
        handled = []
        # Ctrl-C belongs to ssh (the terminal sends it to both of us); a
        # request to stop is passed on to it.
        actions = {signal.SIGINT: lambda: None, signal.SIGTERM: process.terminate}
        if hasattr(signal, "SIGHUP"):
            actions[signal.SIGHUP] = process.terminate
        for sig, action in actions.items():
            try:
                loop.add_signal_handler(sig, action)
                handled.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            code = await process.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
    finally:
        await proxy.close()
    if proxy.failure is not None:
        raise proxy.failure
    return code if code >= 0 else 128 - code
