"""``remote-access-client``: the technician's local proxy to PASSTHROUGH endpoints.

    remote-access-client login --server URL [--token TOKEN | --user NAME] [--insecure] [--ca-file PATH]
    remote-access-client server DEVICE --config NAME_OR_ID [--port N] [--bind ADDR] [--stdio]
    remote-access-client connect ssh DEVICE --config NAME_OR_ID --user NAME [-i KEY] [-o OPTION]... [-- COMMAND...]

Every command takes ``--config-file FILE`` (``login`` also as ``--config
FILE``; default ``$XDG_CONFIG_HOME/remote-access-client/client.toml``) and
``-v``. DEVICE and ``--config`` take the server's numeric ids, used as they
are, or a serial and an endpoint's name, looked up through the server's APIs.
Exit codes: 0 done, 1 an error a person must fix, 2 bad usage; ``connect
ssh`` exits with ssh's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from agent.cli_frame import LOG_FORMAT, run_command
from agent.client import api
from agent.client.config import ClientConfig, default_config_path, load_config, save_config
from agent.client.link import ClientError, Link, Target
from agent.client.proxy import Proxy, open_tunnel, relay
from agent.client.ssh import connect_ssh, ssh_options
from agent.client.stdio import stdio
from agent.config import ConfigError, normalize_server_url

PROG = "remote-access-client"
PASSWORD_ENV = "REMOTE_ACCESS_PASSWORD"
TOKEN_ENV = "REMOTE_ACCESS_TOKEN"

logger = logging.getLogger("agent.client")


def build_parser() -> argparse.ArgumentParser:
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                         help="log debug messages (twice: also the WebSocket library's)")
    config_help = f"the client's configuration file (default: {default_config_path()})"

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Reach a TCP service on a device's network (a PASSTHROUGH endpoint) from this machine, "
        "through the remote access gateway: ssh, scp or any TCP client.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    login = commands.add_parser("login", parents=[verbose], help="store the server and your credentials",
                                description="Check that the server answers, then store it and your credentials "
                                "(mode 0600).")
    login.add_argument("--server", required=True, metavar="URL", help="the gateway's base URL")
    who = login.add_mutually_exclusive_group()
    who.add_argument("--token", metavar="TOKEN",
                     help=f"an API token from your profile page (default: ${TOKEN_ENV}, else asked for)")
    who.add_argument("--user", metavar="NAME", help=f"log in with a password instead (from ${PASSWORD_ENV}, else "
                     "asked for); it is stored in the file")
    login.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    login.add_argument("--ca-file", metavar="PATH", help="also trust the CA certificates in this PEM file")
    login.add_argument("--config-file", "--config", dest="config_file", type=Path, metavar="FILE", help=config_help)

    server = commands.add_parser("server", parents=[verbose], help="listen on a local port for an endpoint",
                                 description="Listen on a local TCP port; every connection to it gets its own "
                                 "tunnel to the endpoint.")
    _target_arguments(server, config_help)
    server.add_argument("--port", type=int, default=0, metavar="N", help="local port (default: a free one, printed)")
    server.add_argument("--bind", default="127.0.0.1", metavar="ADDR", help="local address (default: 127.0.0.1)")
    server.add_argument("--stdio", action="store_true",
                        help="relay one tunnel over stdin/stdout instead, e.g. as ssh's ProxyCommand")

    connect = commands.add_parser("connect", help="run a client program through a tunnel",
                                  description="Run a client program through a tunnel to the endpoint.")
    programs = connect.add_subparsers(dest="program", required=True, metavar="PROGRAM")
    ssh = programs.add_parser("ssh", parents=[verbose], help="OpenSSH's ssh",
                              usage="%(prog)s DEVICE --config NAME_OR_ID --user NAME [-i FILE] [-o OPTION]... "
                              "[-- COMMAND...]",
                              description="Run `ssh -p PORT -o HostKeyAlias=DEVICE-CONFIG USER@127.0.0.1 [COMMAND]` "
                              "through a tunnel; exit with ssh's exit code.")
    _target_arguments(ssh, config_help)
    ssh.add_argument("--user", required=True, metavar="NAME", help="the user to log in as on the target")
    ssh.add_argument("-i", "--identity", action="append", default=[], metavar="FILE", help="ssh's -i (repeatable)")
    ssh.add_argument("-o", "--ssh-option", action="append", default=[], metavar="OPTION",
                     help="ssh's -o, e.g. -o StrictHostKeyChecking=accept-new (repeatable)")
    return parser


def _target_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    parser.add_argument("device", metavar="DEVICE", help="the device's id, or its serial")
    parser.add_argument("--config", required=True, metavar="NAME_OR_ID", help="the PASSTHROUGH endpoint's id or name")
    parser.add_argument("--config-file", type=Path, metavar="FILE", help=config_help)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return f"{PROG}: {level}{record.getMessage()}"


def _ask(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:
        return ""


def _login(args: argparse.Namespace, path: Path) -> int:
    server = normalize_server_url(args.server)
    token = username = password = ""
    if args.user:
        username = args.user
        password = os.environ.get(PASSWORD_ENV) or _ask(f"Password for {username} at {server}: ")
        if not password:
            raise ClientError("no password given")
    else:
        token = args.token or os.environ.get(TOKEN_ENV) or _ask("API token (from your profile page): ")
        token = token.strip()
        if not token:
            raise ClientError("no token given: pass --token TOKEN, or --user NAME to log in with a password")
    config = ClientConfig(server=server, token=token, username=username, password=password,
                          insecure=args.insecure, ca_file=os.path.abspath(args.ca_file) if args.ca_file else "")
    if urlsplit(server).scheme == "http" and urlsplit(server).hostname not in ("localhost", "127.0.0.1", "::1"):
        logger.warning("%s is not HTTPS: your credentials will cross the network unencrypted", server)
    checked = api.check_credentials(Link(server, config.authorization, config.ssl_context()))
    try:
        save_config(config, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the configuration at {path}: {exc.strerror or exc}") from None
    shown = f"API token {token[:8]}…" if token else f"user {username} and password"
    tls = "not verified (--insecure)" if args.insecure else "verified" + (f", also trusting {config.ca_file}"
                                                                           if config.ca_file else "")
    print(f"server:      {server}")
    print(f"credentials: {shown}: {checked}")
    if server.startswith("https:"):
        print(f"TLS:         {tls}")
    print(f"saved to:    {path} (mode 0600)")
    return 0


@contextlib.contextmanager
def _on_signals(action: Callable[[], None], *signals: signal.Signals) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    handled = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, action)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):
            pass  # not on Windows' event loop: Ctrl-C still ends asyncio.run()
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


async def _serve(link: Link, target: Target, host: str, port: int) -> int:
    proxy = Proxy(link, target)
    port = await proxy.start(host, port)
    shown = f"[{host}]" if ":" in host else host
    logger.info("listening on %s:%d for %s at %s (Ctrl-C to stop)", shown, port, target, link.server)
    try:
        with _on_signals(proxy.stop, signal.SIGINT, signal.SIGTERM):
            await proxy.wait()
    finally:
        await proxy.close()
    if proxy.failure is not None:
        raise proxy.failure
    logger.info("stopped")
    return 0


async def _stdio(link: Link, target: Target) -> int:
    ws = await open_tunnel(link, target)
    logger.info("tunnel to %s open", target)
    async with stdio() as (reader, writer):
        task = asyncio.create_task(relay(ws, reader, writer))

        def stop() -> None:
            task.cancel()

        with _on_signals(stop, signal.SIGINT, signal.SIGTERM):
            try:
                relayed = await task
            except asyncio.CancelledError:
                return 0
    if relayed.failed:
        raise ClientError(relayed.ended_by)
    logger.info("tunnel ended: %s", relayed.ended_by)
    return 0


def _run(args: argparse.Namespace, path: Path) -> int:
    config = load_config(path)
    link = Link(config.server, config.authorization, config.ssl_context())
    target = api.resolve(link, args.device, args.config)
    if args.command == "connect":
        options = ssh_options(args.identity, args.ssh_option)
        return asyncio.run(connect_ssh(link, target, args.user, options, args.command_args))
    if args.stdio:
        return asyncio.run(_stdio(link, target))
    return asyncio.run(_serve(link, target, args.bind, args.port))


def _command(args: argparse.Namespace) -> int:
    path = args.config_file if args.config_file is not None else default_config_path()
    if args.command == "login":
        return _login(args, path)
    return _run(args, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # The remote command, split off here: argparse cannot tell it from DEVICE.
    remote_command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, remote_command = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    args.command_args = remote_command
    if remote_command and args.command != "connect":
        parser.error(f"unexpected arguments after --: {' '.join(remote_command)}")
    if args.command == "server" and args.stdio and (args.port or args.bind != "127.0.0.1"):
        parser.error("--stdio listens on no port: leave out --port and --bind")
    # Under ssh, or as its ProxyCommand, only warnings and errors: they
    # share the terminal with the session.
    quiet = args.command == "connect" or (args.command == "server" and args.stdio)
    return run_command(
        lambda: _command(args),
        logger=logger,
        failures=(ClientError, ConfigError),
        formatter=logging.Formatter(LOG_FORMAT) if args.verbose else _Formatter(),
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
        library_level=logging.DEBUG if args.verbose >= 2 else logging.WARNING,
    )
