"""Device credentials on device endpoints: `Authorization: Basic
base64(device_<serial>:<token>)`, with an optional `<tenant>/` prefix on the
user name, or `Authorization: Bearer <token>`."""

import base64
import binascii

from endpoints.models import DEVICE_USERNAME_PREFIX, Device, hash_token


def parse_basic(credentials: str) -> tuple[str, str] | None:
    """(user name without any tenant prefix, password), or None."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, separator, password = decoded.partition(":")
    if not separator:
        return None
    return username.rpartition("/")[2], password


def device_for_authorization(header: str) -> Device | None:
    """The device these credentials belong to, or None. This runs a query."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() == "basic":
        parsed = parse_basic(credentials)
        if parsed is None or not parsed[0].startswith(DEVICE_USERNAME_PREFIX):
            return None
        serial = parsed[0][len(DEVICE_USERNAME_PREFIX):]
        device = Device.objects.filter(serial=serial).first()
        return device if device is not None and device.token_matches(parsed[1]) else None
    if scheme.lower() == "bearer" and credentials.strip():
        return Device.objects.filter(token_hash=hash_token(credentials.strip())).first()
    return None
