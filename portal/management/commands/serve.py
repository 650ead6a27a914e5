import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from daphne.cli import CommandLineInterface
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from endpoints.demo import SERIAL, set_up_demo
from portal.tls import certificate_files
from sessions import worker

# WebSocket frames carry at most 64 KiB; anything over 1 MiB is refused.
MAX_MESSAGE = 1024 * 1024
AGENT_START_TIMEOUT = 30


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
        "portal.asgi:application",
    ]


class Command(BaseCommand):
    help = "Start the gateway on daphne, optionally with the demo device's agent beside it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--tls-port", type=int, default=None, help="also serve HTTPS on this port")
        parser.add_argument("--demo", action="store_true", help="run the demo device's agent too")

    def handle(self, *args: object, **options: object) -> None:
        host, port = str(options["host"]), int(options["port"])
        tls_port = options["tls_port"]
        worker.name = f"{socket.gethostname()}:{port}"
        closed = worker.close_sessions_left_open(worker.name)
        if closed:
            self.stdout.write(f"Closed the audit of {closed} session(s) left open when this server stopped.")
        url = f"http://{host}:{port}"
        agents: list[subprocess.Popen] = []
        if options["demo"]:
            config = set_up_demo(url)
            # Started once the server listens, so its first attempt succeeds.
            threading.Thread(target=start_agent_when_listening, args=(host, port, config, agents), daemon=True).start()
            self.stdout.write(f"Demo device {SERIAL}: its agent runs beside the server.")
        self.stdout.write(f"Remote access gateway: {url}/")
        if tls_port:
            self.stdout.write(f"HTTPS (for wss:// clients such as c8ylp): https://{host}:{tls_port}/")
        try:
            CommandLineInterface().run(daphne_arguments(host, port, tls_port))
        finally:
            for agent in agents:
                agent.terminate()
                agent.wait(timeout=10)


def start_agent_when_listening(host: str, port: int, config: Path, agents: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + AGENT_START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    agents.append(subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)]))
