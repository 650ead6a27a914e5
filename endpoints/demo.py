"""The demo device that `make run` shows a newcomer: registered, with an
endpoint, and its agent's configuration written beside the database."""

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from agent.config import AgentConfig, save_config
from endpoints.models import Device, Endpoint, Protocol

SERIAL = "demo-gateway"


def set_up_demo(server: str) -> Path:
    """Make sure the demo device exists, give it fresh credentials, and
    return the path of its agent's configuration."""
    device, _ = Device.objects.get_or_create(serial=SERIAL, defaults={"name": "Demo gateway"})
    token = device.issue_token()
    device.save()
    Endpoint.objects.update_or_create(
        device=device,
        name="Demo: this server's web page",
        defaults={"protocol": Protocol.PASSTHROUGH, "hostname": "127.0.0.1", "port": urlsplit(server).port or 80},
    )
    path = settings.DATA_DIR / "demo-agent.toml"
    # The demo agent may reach this machine only.
    config = AgentConfig(server=server, device_id=SERIAL, username=device.username, password=token,
                         allow=["127.0.0.0/8", "[::1]"])
    save_config(config, path)
    return path
