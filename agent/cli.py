"""``remote-access-agent``: register the device, then run the agent.

    remote-access-agent register --server URL --device-id SERIAL --one-time-password OTP [--config FILE]
    remote-access-agent run [--config FILE]

Both take ``--insecure``, ``--ca-file PATH`` and ``-v``. Exit codes: 0 done
(``run``: stopped by SIGINT/SIGTERM), 1 a failure a person must fix, 2 bad
usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import tomllib
from collections.abc import Sequence
from pathlib import Path

from agent.allowlist import AllowList
from agent.cli_frame import LOG_FORMAT, run_command
from agent.config import (
    DEFAULT_PING_INTERVAL,
    AgentConfig,
    ConfigError,
    default_config_path,
    load_config,
    normalize_server_url,
    save_config,
)
from agent.control import Agent, CredentialsRefused
from agent.registration import RegistrationError, register
from agent.transport import build_ssl_context

logger = logging.getLogger("agent")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"configuration file (default: {default_config_path()})",
    )
    common.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    common.add_argument("--ca-file", metavar="PATH", help="also trust the CA certificates in this PEM file")
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log debug messages (twice: also the WebSocket library's)",
    )

    parser = argparse.ArgumentParser(
        prog="remote-access-agent",
        description="Device agent of the remote access gateway: lets the server reach "
        "SSH, Telnet and VNC on this device's network through an outgoing connection.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    reg = commands.add_parser(
        "register",
        parents=[common],
        help="trade a one-time password for the device's credentials",
        description="Register this device with the server and store its credentials.",
    )
    reg.add_argument(
        "--server", required=True, metavar="URL", help="the server's base URL, e.g. https://gateway.example.com"
    )
    reg.add_argument(
        "--device-id", required=True, metavar="SERIAL", help="this device's serial, as registered on the server"
    )
    reg.add_argument("--one-time-password", required=True, metavar="OTP", help='from "Register device" on the server')

    commands.add_parser(
        "run",
        parents=[common],
        help="connect to the server and serve connect requests",
        description="Keep the control channel open and forward the sessions the server asks for.",
    )
    return parser


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    try:
        return build_ssl_context(args.insecure, args.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA file {args.ca_file}: {exc}") from None


def _existing_settings(path: Path) -> dict:
    """What a new registration keeps from the current file (allow-list, ping interval).

    Checked before the one-time password is spent: overwriting an unreadable
    file would silently drop its allow-list, and an empty list allows all.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"existing configuration at {path} is unreadable ({exc}): fix or remove it first") from None
    kept: dict = {}
    allow = data.get("allow", [])
    try:
        if not isinstance(allow, list):
            raise ValueError("`allow` must be a list of strings")
        AllowList.parse(allow)
    except ValueError as exc:
        raise ConfigError(f"existing configuration at {path} has an invalid allow-list ({exc}): fix it first") from None
    kept["allow"] = list(allow)
    ping = data.get("ping_interval")
    if isinstance(ping, (int, float)) and not isinstance(ping, bool) and 0 < ping < float("inf"):
        kept["ping_interval"] = float(ping)
    return kept


def _check_writable(path: Path) -> None:
    # Before the one-time password is spent: afterwards a failed write
    # would lose the only copy of the device's credentials.
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write the configuration at {path}: permission denied")


def _register(args: argparse.Namespace, path: Path) -> int:
    server = normalize_server_url(args.server)
    context = _ssl_context(args)
    kept = _existing_settings(path)
    _check_writable(path)
    credentials = register(server, args.device_id, args.one_time_password, context)
    config = AgentConfig(
        server=server,
        device_id=args.device_id,
        username=credentials.username,
        password=credentials.password,
        allow=kept.get("allow", []),
        ping_interval=kept.get("ping_interval", DEFAULT_PING_INTERVAL),
    )
    try:
        save_config(config, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the configuration at {path}: {exc.strerror or exc}") from None
    logger.info("registered device %s as %s; configuration written to %s", args.device_id, credentials.username, path)
    return 0


async def _serve(config: AgentConfig, context: ssl.SSLContext | None) -> int:
    agent = Agent(config, ssl_context=context)
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, agent.stop)
            signals.append(sig)
        except NotImplementedError:
            # Not on Windows' event loop: Ctrl-C still ends asyncio.run().
            pass
    try:
        await agent.run()
    except CredentialsRefused as exc:
        logger.error("%s", exc)
        return 1
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    logger.info("stopped")
    return 0


def _run(args: argparse.Namespace, path: Path) -> int:
    config = load_config(path)
    context = _ssl_context(args)
    return asyncio.run(_serve(config, context))


def _command(args: argparse.Namespace) -> int:
    path = args.config if args.config is not None else default_config_path()
    if args.command == "register":
        return _register(args, path)
    return _run(args, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(
        lambda: _command(args),
        logger=logger,
        failures=(ConfigError, RegistrationError),
        formatter=logging.Formatter(LOG_FORMAT),
        level=logging.DEBUG if args.verbose else logging.INFO,
        # websockets logs every frame at debug: only wanted when asked twice.
        library_level=logging.DEBUG if args.verbose >= 2 else logging.INFO,
    )
