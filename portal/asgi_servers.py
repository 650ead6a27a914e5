"""The ASGI servers `manage.py serve` can run the gateway on, with the same
WebSocket settings on each: pings, no idle timeout, 1 MiB message limit.

uvicorn (its sans-I/O `websockets` protocol) is the default: it stops
reading a socket while the application has not taken the last message and
waits for a slow peer's socket to drain, so a session's buffers stay bounded
whatever one side sends. daphne reads and writes without bound, and drops a
slow reader's connection one second after the close with what it had not
yet sent (`python -m bench slowreader`); it also carried half the bytes per
second (`python -m bench passthrough`). It stays available as ASGI_SERVER=daphne.
"""

import asyncio
import logging
import signal
from contextlib import nullcontext

from django.conf import settings

from portal.redact import ActionLogger, redacting_action_logger
from portal.tls import certificate_files

SERVERS = ("daphne", "uvicorn")
# WebSocket frames carry at most 64 KiB; anything over 1 MiB is refused.
MAX_MESSAGE = 1024 * 1024
APPLICATION = "portal.asgi:application"


def escape(value: object) -> str:
    """A value in Twisted's endpoint syntax, where colons and backslashes are escaped."""
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def daphne_arguments(host: str, port: int, tls_port: int | None = None) -> list[str]:
    interval = settings.REMOTE_ACCESS_PING_INTERVAL
    tls = []
    if tls_port:
        cert, key = certificate_files()
        tls = ["-e", f"ssl:port={tls_port}:interface={escape(host)}:privateKey={escape(key)}:certKey={escape(cert)}"]
    return [
        *tls,
        "--bind", host,
        "--port", str(port),
        "--ping-interval", str(interval),
        "--ping-timeout", str(interval * 2),
        # Sessions last as long as people work; daphne's default is 24 h.
        "--websocket_timeout", "-1",
        "--websocket-max-message-size", str(MAX_MESSAGE),
        "--websocket-max-frame-size", str(MAX_MESSAGE),
        APPLICATION,
    ]


def run_daphne(host: str, port: int, tls_port: int | None) -> None:
    from daphne.cli import CommandLineInterface
    from daphne.server import Server

    class RedactingServer(Server):
        def __init__(self, *args: object, action_logger: ActionLogger | None = None, **kwargs: object) -> None:
            logger = redacting_action_logger(action_logger) if action_logger else None
            super().__init__(*args, action_logger=logger, **kwargs)

    class Cli(CommandLineInterface):
        server_class = RedactingServer

    Cli().run(daphne_arguments(host, port, tls_port))


class RefusedUpgradeNoise(logging.Filter):
    """uvicorn logs an error for every upgrade refused with an HTTP status
    (the ASGI denial response) as if the application had failed; the
    refusal itself is logged by the gateway with its reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def run_uvicorn(host: str, port: int, tls_port: int | None) -> None:
    import uvicorn

    logging.getLogger("uvicorn.error").addFilter(RefusedUpgradeNoise())

    class Server(uvicorn.Server):
        # Two servers share one loop; run_servers handles the signals for both.
        def capture_signals(self):  # type: ignore[override]
            return nullcontext()

    def config(listen_port: int, **tls: str) -> uvicorn.Config:
        interval = settings.REMOTE_ACCESS_PING_INTERVAL
        return uvicorn.Config(
            APPLICATION,
            host=host,
            port=listen_port,
            ws="websockets-sansio",
            ws_max_size=MAX_MESSAGE,
            ws_ping_interval=interval,
            ws_ping_timeout=interval * 2,
            # Compression costs more CPU than loopback and LAN links save.
            ws_per_message_deflate=False,
            lifespan="off",
            # Django's LOGGING stays in charge of the log format.
            log_config=None,
            **tls,
        )

    servers = [Server(config(port))]
    if tls_port:
        cert, key = certificate_files()
        servers.append(Server(config(tls_port, ssl_certfile=str(cert), ssl_keyfile=str(key))))

    async def run_servers() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(run_servers())


def run(server: str, host: str, port: int, tls_port: int | None) -> None:
    {"daphne": run_daphne, "uvicorn": run_uvicorn}[server](host, port, tls_port)
