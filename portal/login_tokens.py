"""Login tokens as Cumulocity's clients know them: a JWT (HS256, signed with
SECRET_KEY) in the `authorization` cookie, bound to the `XSRF-TOKEN` cookie.

The same token is accepted as `Authorization: Bearer`. Made by the form
login at /tenant/oauth; valid for LOGIN_TOKEN_TTL.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

LOGIN_TOKEN_TTL = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(signing_input: str) -> str:
    key = hashlib.sha256(b"login-token:" + settings.SECRET_KEY.encode()).digest()
    return _b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def issue(user: AbstractBaseUser) -> tuple[str, str]:
    """(token, xsrf): a new login token and the XSRF value bound to it."""
    xsrf = secrets.token_urlsafe(24)
    now = int(time.time())
    claims = {"sub": user.get_username(), "uid": user.pk, "iat": now, "exp": now + LOGIN_TOKEN_TTL,
              "xsrf": hashlib.sha256(xsrf.encode()).hexdigest(), "ten": settings.TENANT_ID}
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_signature(signing_input)}", xsrf


def claims_of(token: str) -> dict[str, Any] | None:
    """The token's claims if it is ours, untampered and unexpired."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    if not hmac.compare_digest(_signature(f"{parts[0]}.{parts[1]}"), parts[2]):
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
        return None
    return claims


def user_for(token: str, xsrf: str | None = None) -> AbstractBaseUser | None:
    """The token's active user; with `xsrf` given, it must be the one bound to
    the token (cookie-borne tokens need it, against cross-site requests)."""
    claims = claims_of(token)
    if claims is None:
        return None
    if xsrf is not None and not hmac.compare_digest(claims.get("xsrf", ""), hashlib.sha256(xsrf.encode()).hexdigest()):
        return None
    user = get_user_model().objects.filter(pk=claims.get("uid"), is_active=True).first()
    return user if user is not None and user.get_username() == claims.get("sub") else None
