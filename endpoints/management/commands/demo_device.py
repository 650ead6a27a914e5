from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from agent.config import AgentConfig, save_config
from endpoints.models import Device, Endpoint, Protocol

SERIAL = "demo-gateway"


class Command(BaseCommand):
    help = (
        "Set up the demo device 'demo-gateway' with an endpoint and write its agent's "
        "configuration; print the configuration's path."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--server", required=True, help="the URL the agent connects to")

    def handle(self, *args: object, **options: str) -> str:
        server = options["server"]
        device, _ = Device.objects.get_or_create(serial=SERIAL, defaults={"name": "Demo gateway"})
        token = device.issue_token()
        device.save()
        port = urlsplit(server).port or 80
        Endpoint.objects.update_or_create(
            device=device,
            name="Demo: this server's web page",
            defaults={"protocol": Protocol.PASSTHROUGH, "hostname": "127.0.0.1", "port": port},
        )
        path = settings.DATA_DIR / "demo-agent.toml"
        # The demo agent may reach this machine only.
        config = AgentConfig(server=server, device_id=SERIAL, username=device.username, password=token,
                             allow=["127.0.0.0/8", "[::1]"])
        save_config(config, path)
        return str(path)
