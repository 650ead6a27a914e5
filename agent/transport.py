"""How the agent reaches the server: URLs, credentials, TLS and WebSocket options.

Shared by the control channel, the tunnels and registration so that all
three honour the same ``--insecure`` / ``--ca-file`` and proxy settings.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import connect

USER_AGENT = "remote-access-agent/0.1"
CONTROL_PATH = "/service/remoteaccess/agent"
TUNNEL_PATH = "/service/remoteaccess/device/"
REGISTRATION_PATH = "/service/remoteaccess/registration"


def build_ssl_context(insecure: bool = False, ca_file: str | None = None) -> ssl.SSLContext | None:
    """The TLS context for ``https``/``wss``, or None for the system defaults.

    ``ca_file`` adds to the system's trust store rather than replacing it, so
    a device behind a TLS-inspecting proxy can trust the proxy's CA and still
    reach a server with a public certificate.
    """
    if not insecure and not ca_file:
        return None
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def basic_authorization(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def websocket_url(server: str, path: str) -> str:
    """``http://host/prefix`` + ``/path`` -> ``ws://host/prefix/path`` (https -> wss)."""
    scheme, rest = server.split("://", 1)
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{ws_scheme}://{rest.rstrip('/')}{path}"


@dataclass(frozen=True)
class ServerLink:
    """Everything needed to open a WebSocket to the server as this device."""

    server: str  # normalized base URL, http(s)://host[:port][/prefix]
    username: str
    password: str
    ssl_context: ssl.SSLContext | None = None
    ping_interval: float | None = 30.0
    open_timeout: float = 10.0

    @property
    def authorization(self) -> str:
        return basic_authorization(self.username, self.password)

    @property
    def control_url(self) -> str:
        return websocket_url(self.server, CONTROL_PATH)

    def tunnel_url(self, connection_key: str) -> str:
        # The key is the server's; quote it so it cannot alter the path.
        return websocket_url(self.server, TUNNEL_PATH + quote(connection_key, safe=""))

    def connect(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] | None = None,
        max_size: int | None = 2**20,
    ) -> connect:
        """An awaitable ``websockets`` connection to ``url`` with our auth, TLS and keepalive."""
        return open_websocket(
            url,
            authorization=self.authorization,
            user_agent=USER_AGENT,
            ssl_context=self.ssl_context,
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            subprotocols=subprotocols,
            max_size=max_size,
        )


def open_websocket(
    url: str,
    *,
    authorization: str,
    user_agent: str,
    ssl_context: ssl.SSLContext | None,
    open_timeout: float,
    ping_interval: float | None,
    subprotocols: Sequence[str] | None = None,
    max_size: int | None = 2**20,
) -> connect:
    """An awaitable ``websockets`` connection to ``url``: the agent's and the local proxy's.

    The proxy comes from ``https_proxy``/``http_proxy``/``no_proxy``:
    websockets reads them itself when ``proxy`` is left at its default.
    """
    kwargs: dict[str, Any] = {}
    if url.startswith("wss://") and ssl_context is not None:
        # websockets refuses an ssl argument for ws:// URLs.
        kwargs["ssl"] = ssl_context
    return connect(
        url,
        additional_headers={"Authorization": authorization},
        user_agent_header=user_agent,
        subprotocols=list(subprotocols) if subprotocols else None,
        # Tunnels carry SSH/VNC bytes that are encrypted or already
        # compressed: deflate would cost CPU on small devices for nothing.
        compression=None,
        max_size=max_size,
        open_timeout=open_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_interval,
        **kwargs,
    )
