"""The server's address and the technician's credentials: small HTTP requests
(urllib) and tunnel WebSockets, and the errors a person can act on."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import connect

from agent.transport import open_websocket, websocket_url

USER_AGENT = "remote-access-client/0.1"
CLIENT_PATH = "/service/remoteaccess/client/{device}/configurations/{config}"
# Binary frames carry at most 64 KiB; allow some slack from other servers.
MAX_FRAME = 1024 * 1024
PING_INTERVAL = 20.0
OPEN_TIMEOUT = 10.0
HTTP_TIMEOUT = 15.0
MAX_BODY = 1024 * 1024

CREDENTIALS_REFUSED = "the server refused your credentials: run `remote-access-client login` again"
NO_ACCESS = "no such device or endpoint, or you have no access to it"


class ClientError(Exception):
    """Something went wrong that a person must look at; the message says what."""


class Unreachable(ClientError):
    """The server could not be reached, or did not answer as a gateway does."""


class Refused(ClientError):
    """The server refused the credentials or the device/endpoint: retrying cannot help."""


@dataclass(frozen=True)
class Target:
    """One PASSTHROUGH endpoint, by the server's ids."""

    device_id: str
    config_id: str

    def __str__(self) -> str:
        return f"endpoint {self.config_id} of device {self.device_id}"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    @property
    def is_json(self) -> bool:
        return self.content_type.split(";")[0].strip().lower() == "application/json"

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer in itself (e.g. to a login page), not something to follow.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class Link:
    server: str  # normalized base URL, http(s)://host[:port][/prefix]
    authorization: str
    ssl_context: ssl.SSLContext | None = None
    ping_interval: float = PING_INTERVAL
    open_timeout: float = OPEN_TIMEOUT

    def get(self, path: str, *, authenticated: bool = True) -> Answer:
        """GET ``path`` (blocking); any HTTP status is an answer, no answer raises :class:`Unreachable`."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if authenticated:
            headers["Authorization"] = self.authorization
        request = urllib.request.Request(self.server + path, headers=headers)
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.ssl_context), _NoRedirects)
        try:
            with opener.open(request, timeout=HTTP_TIMEOUT) as response:
                return Answer(response.status, response.headers.get("Content-Type", ""), response.read(MAX_BODY))
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    body = exc.read(MAX_BODY)
                except OSError:
                    body = b""
                return Answer(exc.code, exc.headers.get("Content-Type", ""), body)
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise self.unreachable(reason if isinstance(reason, BaseException) else OSError(str(reason))) from None
        except OSError as exc:
            raise self.unreachable(exc) from None

    def tunnel_url(self, target: Target) -> str:
        path = CLIENT_PATH.format(device=quote(target.device_id, safe=""), config=quote(target.config_id, safe=""))
        return websocket_url(self.server, path)

    def connect(self, target: Target) -> connect:
        """An awaitable WebSocket to ``target``'s passthrough route; errors are websockets' own."""
        return open_websocket(
            self.tunnel_url(target),
            authorization=self.authorization,
            user_agent=USER_AGENT,
            ssl_context=self.ssl_context,
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            # The server echoes it; some servers in front of devices want it.
            subprotocols=["binary"],
            max_size=MAX_FRAME,
        )

    def unreachable(self, exc: BaseException) -> Unreachable:
        where = f"cannot reach the server at {self.server}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Unreachable(
                f"{where}: its TLS certificate is not trusted ({exc.verify_message}); "
                "run `remote-access-client login` with --ca-file PATH (or --insecure)"
            )
        if isinstance(exc, ConnectionRefusedError):
            return Unreachable(f"{where}: connection refused")
        if isinstance(exc, socket.gaierror):
            return Unreachable(f"{where}: unknown host")
        if isinstance(exc, TimeoutError):
            return Unreachable(f"{where}: no answer in time")
        if isinstance(exc, OSError) and exc.strerror:
            return Unreachable(f"{where}: {exc.strerror}")
        return Unreachable(f"{where}: {exc}")

