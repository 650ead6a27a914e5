"""WebSocket endpoints: authenticate, look up, hand over to the relay."""

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404
from django.utils import timezone

from endpoints.access import get_endpoint
from endpoints.models import Endpoint, Protocol
from sessions import operations, refusals, relay, smartrest
from sessions.client_side import ClientSession, open_port
from sessions.relay import Side
from sessions.session_end import record_end
from sessions.browser_session import run_page
from sessions.websocket_auth import (
    authenticate_device,
    authenticate_user,
    client_address,
    refuse,
    subprotocol,
)

log = logging.getLogger(__name__)

REPLACED = 4409
REVOKED = 4401
LAUNCH_REFUSED = 4403
# Refresh "agent last seen" at most this often while lines keep coming.
SEEN_EVERY = 30


class AgentConsumer(AsyncWebsocketConsumer):
    """A device's control channel: connect requests down, status reports up."""

    device = None

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        device = await authenticate_device(self.scope)
        if device is None:
            log.warning("control channel refused: bad device credentials from %s", client_address(self.scope))
            await refuse(self.scope, self.base_send, 401, "the device's credentials were refused")
            return
        self.device = device
        self.last_seen = timezone.now()
        previous = await database_sync_to_async(operations.device_online)(device, self.channel_name)
        if previous:
            await self.channel_layer.send(previous, {"type": "control.replaced"})
        await self.accept()
        log.info("device %s online", device.serial)
        for channel in await database_sync_to_async(operations.waiting_clients)(device.pk):
            await self.channel_layer.send(channel, {"type": "device.online"})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error("binary frame on the control channel; send SmartREST text lines")
            return
        # Only CR/LF end a line: other Unicode line breaks may sit in a quoted field.
        for line in text_data.rstrip("\r\n").split("\n"):
            try:
                report = await database_sync_to_async(operations.apply_report)(self.device, line)
            except DatabaseError as exc:
                # A database locked past its timeout must not close the
                # channel and take the device offline; the line is refused.
                await self._error("the server could not record it; nothing changed", line, exc)
                continue
            if report.error:
                await self._error(report.error, line)
            elif report.failed is not None and report.failed.client_channel:
                await self.channel_layer.send(
                    report.failed.client_channel,
                    {"type": "operation.failed", "reason": report.failed.failure_reason},
                )
        if (timezone.now() - self.last_seen).total_seconds() > SEEN_EVERY:
            self.last_seen = timezone.now()
            await database_sync_to_async(operations.device_seen)(self.device.pk)

    async def _error(self, reason: str, line: str = "", cause: Exception | None = None) -> None:
        log.warning("device %s: refused line %r: %s%s", self.device.serial, line[:200], reason,
                    f" ({cause})" if cause else "")
        await self.send(text_data=smartrest.format_line("ERR", reason))

    async def disconnect(self, code: int) -> None:
        if self.device is not None:
            await database_sync_to_async(operations.device_offline)(self.device.pk, self.channel_name)
            log.info("device %s control channel closed (%s)", self.device.serial, code)

    async def control_send(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["line"])

    async def control_replaced(self, event: dict[str, Any]) -> None:
        await self.close(code=REPLACED)

    async def control_revoked(self, event: dict[str, Any]) -> None:
        log.warning("device %s: credentials revoked, closing its control channel", self.device.serial)
        await self.close(code=REVOKED)


async def device_tunnel(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/service/remoteaccess/device/<connectionKey>`: the device's side of one session."""
    if (await receive())["type"] != "websocket.connect":
        return
    device = await authenticate_device(scope)
    if device is None:
        log.warning("tunnel refused: bad device credentials from %s", client_address(scope))
        await refuse(scope, send, 401, "the device's credentials were refused")
        return
    key = scope["url_route"]["kwargs"]["connection_key"]
    claim = await database_sync_to_async(operations.claim_tunnel)(device, key)
    if claim.operation is None:
        log.warning("tunnel of device %s refused: %s", device.serial, claim.reason)
        await refuse(scope, send, 403, claim.reason)
        return
    operation = claim.operation
    await send({"type": "websocket.accept", "subprotocol": subprotocol(scope)})
    side = Side("device", receive, send, text_ends=True)
    port = None
    client = relay.waiting.pop(operation.pk, None)
    if client is not None:
        relay.pair_locally(client, side)
    else:
        port = await open_port(side)
        side.attach(port.connect(operation.client_channel))
        await get_channel_layer().send(operation.client_channel, {"type": "relay.join", "channel": port.channel})
    reason = "the relay failed"
    try:
        closed = await side.run()
        reason = closed.reason
        log.info("operation %s: tunnel ended: %s", operation.pk, closed.reason)
    finally:
        if port is not None:
            await port.stop()
        await record_end(operation.pk, from_device=side.bytes_in, reason=reason)


@database_sync_to_async
def passthrough_endpoint(user: Any, device_id: str, endpoint_id: str) -> Endpoint | None:
    try:
        endpoint = get_endpoint(user, device_id, endpoint_id)
    except (Http404, PermissionDenied):
        return None
    return endpoint if endpoint.protocol == Protocol.PASSTHROUGH else None


async def passthrough_client(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/service/remoteaccess/client/<deviceId>/configurations/<configId>`: a
    raw byte tunnel for local proxies (c8ylp, remote-access-client)."""
    if (await receive())["type"] != "websocket.connect":
        return
    user, api_token_id = await authenticate_user(scope)
    kwargs = scope["url_route"]["kwargs"]
    if user is None:
        # Logged, not recorded: the user is unknown.
        log.warning("passthrough client refused: no valid credentials for endpoint %.40r of device %.40r from %s",
                    kwargs["endpoint_id"], kwargs["device_id"], client_address(scope))
        await refuse(scope, send, 401, "authentication required")
        return
    endpoint = await passthrough_endpoint(user, kwargs["device_id"], kwargs["endpoint_id"])
    if endpoint is None:
        await database_sync_to_async(refusals.record_attempt)(
            user, kwargs["device_id"], kwargs["endpoint_id"], client_address(scope), "not a passthrough endpoint"
        )
        await refuse(scope, send, 404, "no such passthrough endpoint")
        return
    # Accept at once: c8ylp gives up when it cannot send for 10 s, and the
    # device may take longer than that to join.
    await send({"type": "websocket.accept", "subprotocol": subprotocol(scope)})
    side = Side("client", receive, send, text_ends=False)
    session = ClientSession(side, endpoint, user, client_address(scope), api_token_id=api_token_id)
    closed = await session.run()
    log.info("operation %s: client side ended: %s", session.operation_id, closed.reason)


async def terminal(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/ws/sessions/<id>/?launch=…`: the terminal page of one operation."""
    if (await receive())["type"] != "websocket.connect":
        return
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        log.warning("session page %s refused: not logged in (from %s)", scope["url_route"]["kwargs"]["operation_id"],
                    client_address(scope))
        await refuse(scope, send, 401, "log in first")
        return
    query = {key: values[0] for key, values in parse_qs(scope.get("query_string", b"").decode("latin1")).items()}
    operation_id = scope["url_route"]["kwargs"]["operation_id"]
    claimed = await database_sync_to_async(operations.claim_launch)(operation_id, user, query.get("launch", ""))
    await send({"type": "websocket.accept"})
    if isinstance(claimed, str):
        await database_sync_to_async(refusals.record_launch)(operation_id, user, client_address(scope), claimed)
        await send({"type": "websocket.send", "text": json.dumps({"type": "status", "state": "disconnected",
                                                                  "message": claimed})})
        await send({"type": "websocket.close", "code": LAUNCH_REFUSED})
        return
    await run_page({**scope, "query": query}, receive, send, claimed, user, client_address(scope))


async def not_found(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Any other path: refused before the upgrade. Without this route Channels
    raises, and daphne answers 500 and logs a traceback for every scanner."""
    if (await receive())["type"] == "websocket.connect":
        await refuse(scope, send, 404, "no such WebSocket endpoint")
