"""What terminal sessions add to the benchmark world: a keys-only OpenSSH
sshd behind the device, an SSH endpoint that logs in to it with a key pair,
and the benchmark's user logged in, as a browser would be."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from bench.world import Site
from tests.sshd import Sshd, keygen

if TYPE_CHECKING:
    from django.test import Client


@dataclass(frozen=True)
class TerminalSite:
    gateway_url: str
    session_cookie: str
    connect_path: str
    # A logged-in Django test client: Connect runs in this process, on the
    # database the gateway shares, as the tests do it.
    client: "Client"

    def connect(self) -> tuple[int, str]:
        """Press Connect: (operation id, launch token). Synchronous: this runs a query."""
        response = self.client.post(self.connect_path)
        if response.status_code != 302 or "launch=" not in response.url:
            raise RuntimeError(f"Connect answered {response.status_code} {getattr(response, 'url', '')}")
        url = urlsplit(response.url)
        return int(url.path.strip("/").split("/")[-1]), parse_qs(url.query)["launch"][0]


@contextmanager
def terminal_site(site: Site, max_startups: int) -> Iterator[TerminalSite]:
    """Keys only, so that the sshd leaves the test user's password alone and
    the test runs on this machine keep theirs; MaxStartups high enough that
    sshd does not drop a burst of logins (its default starts at 10)."""
    from django.contrib.auth.models import User
    from django.test import Client

    from endpoints.models import CredentialsType, Endpoint, Protocol

    with Sshd(extra_config=f"MaxStartups {max_startups}\n", password_login=False) as sshd, \
            tempfile.TemporaryDirectory(prefix="bench-key-") as folder:
        private_key, public_key = keygen(Path(folder) / "key", "ed25519")
        sshd.authorize(public_key)
        endpoint = Endpoint.objects.create(
            device_id=site.device_pk, name="Shell", protocol=Protocol.SSH, hostname=sshd.host, port=sshd.port,
            credentials_type=CredentialsType.KEY_PAIR, username=sshd.user, private_key=private_key,
            # Pinned, as a technician's endpoint is after its first session.
            host_key=sshd.host_keys["ed25519"],
        )
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(User.objects.get(username="bench"))
        yield TerminalSite(
            gateway_url=f"http://127.0.0.1:{site.port}",
            session_cookie=client.cookies["sessionid"].value,
            connect_path=f"/devices/{site.device_pk}/remote-access/{endpoint.pk}/connect/",
            client=client,
        )
