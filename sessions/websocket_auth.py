"""Who is on the other end of a WebSocket, and how to turn them away."""

import logging
from typing import Any
from urllib.parse import parse_qs, urlparse

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http.cookie import parse_cookie

from endpoints.device_auth import device_for_authorization
from endpoints.models import Device
from portal.auth import LOGIN_COOKIE, api_token_for, presented_api_token, user_for_authorization, user_for_cookie
from portal.models import TOKEN_PREFIX
from portal.throttle import LockedOut

log = logging.getLogger(__name__)

Scope = dict[str, Any]


def header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return ""


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


@database_sync_to_async
def authenticate_device(scope: Scope) -> Device | None:
    authorization = header(scope, b"authorization")
    return device_for_authorization(authorization) if authorization else None


@database_sync_to_async
def _api_token_user(token: str, client: str | None) -> tuple[Any, int | None]:
    try:
        api_token = api_token_for(token, client)
    except LockedOut:
        return None, None
    return (api_token.user, api_token.pk) if api_token is not None else (None, None)


async def authenticate_user(scope: Scope) -> tuple[Any, int | None]:
    """The user of a browser session cookie, an Authorization header, the
    `authorization` login cookie with its X-XSRF-TOKEN header, or (for
    clients that can set neither) `?token=…&XSRF-TOKEN=…`; and the id of the
    API token they presented, if they did (revoking it ends their sessions)."""
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return user, None
    authorization = header(scope, b"authorization")
    if authorization:
        if token := presented_api_token(authorization):
            return await _api_token_user(token, client_address(scope))
        try:
            return await database_sync_to_async(user_for_authorization)(authorization, client_address(scope)), None
        except LockedOut:
            return None, None
    cookies = parse_cookie(header(scope, b"cookie"))
    if cookies.get(LOGIN_COOKIE):
        xsrf = header(scope, b"x-xsrf-token")
        return await database_sync_to_async(user_for_cookie)(cookies[LOGIN_COOKIE], xsrf), None
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    token = query.get("token", [""])[0]
    if token:
        if token.startswith(TOKEN_PREFIX):
            return await _api_token_user(token, client_address(scope))
        return await database_sync_to_async(user_for_cookie)(token, query.get("XSRF-TOKEN", [""])[0]), None
    return None, None


async def refuse(scope: Scope, send: Any, status: int, reason: str) -> None:
    """Refuse the upgrade with an HTTP status where the server can send one
    (the ASGI denial-response extension); daphne cannot, and answers 403."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = (reason + "\n").encode()
        await send({
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        })
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close"})


def subprotocol(scope: Scope) -> str | None:
    """Echo `binary` when asked for (thin-edge fails otherwise); never require it."""
    return "binary" if "binary" in scope.get("subprotocols", []) else None


class SameSiteOriginValidator(OriginValidator):
    """Refuse browsers from other sites, and log it: the user is not looked up
    (a foreign site's request carries the cookies without the user's intent),
    so there is no one to write an audit record for."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, settings.ALLOWED_HOSTS)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        origin = header(scope, b"origin")
        if not self.valid_origin(urlparse(origin) if origin else None):
            log.warning("WebSocket %s refused: Origin %.200r is not this site (from %s)", scope.get("path"), origin,
                        client_address(scope))
        return await super().__call__(scope, receive, send)


class ForeignOriginValidator(SameSiteOriginValidator):
    """Also allow clients that send no Origin at all (command-line tools),
    since only browsers can be made to connect with someone else's cookies."""

    def valid_origin(self, parsed_origin: Any) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)
