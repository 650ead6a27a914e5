import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from endpoints.demo import SERIAL, set_up_demo
from portal import asgi_servers
from sessions import worker

AGENT_START_TIMEOUT = 30


class Command(BaseCommand):
    help = "Start the gateway on daphne or uvicorn, optionally with the demo device's agent beside it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--tls-port", type=int, default=None, help="also serve HTTPS on this port")
        parser.add_argument("--demo", action="store_true", help="run the demo device's agent too")
        parser.add_argument("--server", choices=asgi_servers.SERVERS, default=settings.ASGI_SERVER,
                            help="the ASGI server (default: the ASGI_SERVER setting, %(default)s)")

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
            asgi_servers.run(str(options["server"]), host, port, tls_port)
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
