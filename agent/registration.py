"""Trading a one-time password for the device's credentials.

Plain urllib, so that registering needs nothing beyond the standard library;
urllib's default opener already honours ``https_proxy``/``http_proxy``.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from agent.transport import REGISTRATION_PATH, USER_AGENT

TIMEOUT = 30.0


class RegistrationError(Exception):
    """Registration did not succeed; the message says why, for a person."""


class RegistrationRefused(RegistrationError):
    """The server refused the one-time password (HTTP 401)."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def register(
    server: str,
    device_id: str,
    one_time_password: str,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = TIMEOUT,
) -> Credentials:
    """POST the registration and return the credentials the server issued."""
    url = server.rstrip("/") + REGISTRATION_PATH
    body = json.dumps({"deviceId": device_id, "oneTimePassword": one_time_password}).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT},
    )
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl_context))
    try:
        with opener.open(request, timeout=timeout) as response:
            payload = response.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise RegistrationRefused(
                f"the server refused the one-time password for device {device_id!r}: "
                'it is wrong, already used or expired; ask for a new one with "Register device"'
            ) from None
        detail = _error_detail(exc)
        raise RegistrationError(f"registration failed: HTTP {exc.code} from {url}{detail}") from None
    except urllib.error.URLError as exc:
        raise RegistrationError(f"cannot reach {url}: {exc.reason}") from None
    except (OSError, TimeoutError) as exc:
        raise RegistrationError(f"cannot reach {url}: {exc}") from None

    try:
        data = json.loads(payload)
        username, password = data["username"], data["password"]
    except (ValueError, TypeError, KeyError):
        raise RegistrationError(f"unexpected answer from {url}: no username and password in it") from None
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise RegistrationError(f"unexpected answer from {url}: username and password must be strings")
    return Credentials(username=username, password=password)


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(500).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f": {' '.join(text.split())}" if text else ""
