"""The client side of one session, whatever its client (a local proxy's
WebSocket, or a terminal or VNC bridge on this server): create or arm the
operation, ask the device for a tunnel, wait for it, relay, and record the
end."""

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError

from endpoints.models import Endpoint
from sessions import operations, relay, relay_redis, revocation
from sessions.models import Operation, Status
from sessions.relay import (
    DEVICE_DID_NOT_CONNECT,
    DEVICE_OFFLINE,
    DEVICE_REPORTED_FAILURE,
    RELAY_FAILED,
    Closed,
    Side,
)
from sessions.relay_layer import LayerPort
from sessions.session_end import record_end

log = logging.getLogger(__name__)

# A tunnel claimed on another worker may take a moment to announce itself.
JOIN_GRACE = 10.0
# An agent may open the tunnel and the target at once and close the tunnel
# when the target refuses; its failure report may come just after.
REPORT_GRACE = 1.5
# WebSocket close code: the server cannot write the session's audit record.
NOT_RECORDED = 1011


async def open_port(side: Side, on_event: Any = None) -> LayerPort:
    """A new channel for one side of a session; its bytes go through Redis
    lists when the workers share a Redis, else through the channel layer."""
    layer = get_channel_layer()
    redis = relay_redis.shared(settings.REDIS_URL) if settings.REDIS_URL else None
    return LayerPort(layer, await layer.new_channel(), side, on_event=on_event, redis=redis)


class ClientSession:
    def __init__(
        self,
        side: Side,
        endpoint: Endpoint,
        user: Any,
        client_address: str | None,
        operation: Operation | None = None,
        api_token_id: int | None = None,
    ) -> None:
        self.side = side
        self.operation = operation
        self.api_token_id = api_token_id
        side.on_peer_closed = self._device_closed
        self.endpoint = endpoint
        self.user = user
        self.client_address = client_address
        self.operation_id: int | None = None
        self.connect_line = ""
        self.failure: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.port: LayerPort | None = None
        # What a bridge on this server told the user, which says more than
        # the relay's own reason (see finish_bridge).
        self.end_reason = ""

    async def run(self) -> Closed:
        self.port = await open_port(self.side, on_event=self._event)
        closed = Closed("the session failed", RELAY_FAILED)
        try:
            closed = await self._run(self.port.channel)
            return closed
        finally:
            await self.port.stop()
            if self.operation_id is not None:
                relay.waiting.pop(self.operation_id, None)
                await record_end(
                    self.operation_id, to_device=self.side.bytes_in, reason=self.end_reason or closed.reason,
                    final=True,
                )

    async def _run(self, channel: str) -> Closed:
        try:
            if self.operation is None:
                new = await database_sync_to_async(operations.create)(
                    self.endpoint, self.user, self.client_address, channel, self.api_token_id
                )
            else:
                new = await database_sync_to_async(operations.arm)(self.operation, channel)
        except DatabaseError:
            # No session runs without its audit record.
            log.exception("session on endpoint %s refused: its operation could not be recorded", self.endpoint.pk)
            closed = Closed("the session could not be recorded", NOT_RECORDED)
            await self.side.close_websocket(closed)
            return closed
        self.operation_id = new.operation.pk
        self.connect_line = new.connect_line
        if new.operation.status == Status.FAILED:
            closed = Closed(new.operation.failure_reason, DEVICE_OFFLINE)
            await self.side.close_websocket(closed)
            return closed
        relay.waiting[self.operation_id] = self.side
        await self._ask_device()
        relay_task = asyncio.create_task(self.side.run())
        try:
            await self._wait_for_device(relay_task)
            return await relay_task
        finally:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task

    async def _wait_for_device(self, relay_task: "asyncio.Task[Closed]") -> None:
        """Until the tunnel joins, the device reports failure, the key expires
        or the client leaves; then keep watching for a reported failure."""
        ttl = operations.key_ttl().total_seconds()
        joined = asyncio.create_task(self.side.joined.wait())
        try:
            await asyncio.wait({joined, relay_task, self.failure}, timeout=ttl, return_when=asyncio.FIRST_COMPLETED)
            if relay_task.done() and not joined.done():
                closed = relay_task.result()
                reason = (closed.reason if closed.code != 1000
                          else "the client closed the connection before the device connected")
                await database_sync_to_async(operations.fail_unless_connected)(self.operation_id, reason)
                return
            if not joined.done() and not self.failure.done():
                reason = f"device did not connect within {round(ttl)} s"
                if await database_sync_to_async(operations.fail_unless_connected)(self.operation_id, reason):
                    await self.side.end(Closed(reason, DEVICE_DID_NOT_CONNECT))
                    return
                await asyncio.wait({joined, relay_task, self.failure}, timeout=JOIN_GRACE,
                                   return_when=asyncio.FIRST_COMPLETED)
                if not joined.done() and not relay_task.done():
                    await self.side.end(Closed("the device's tunnel was lost", DEVICE_DID_NOT_CONNECT))
                    return
            await asyncio.wait({relay_task, self.failure}, return_when=asyncio.FIRST_COMPLETED)
            if self.failure.done() and not relay_task.done():
                await self.side.end(Closed(self.failure.result(), DEVICE_REPORTED_FAILURE))
        finally:
            joined.cancel()

    async def _device_closed(self, closed: Closed) -> Closed:
        """The device's reason, when it reports a failure as it closes."""
        if not self.failure.done():
            confirmed = await database_sync_to_async(operations.device_confirmed)(self.operation_id)
            if not confirmed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self.failure), REPORT_GRACE)
        if self.failure.done():
            return Closed(self.failure.result(), DEVICE_REPORTED_FAILURE, from_peer=True)
        return closed

    async def _ask_device(self) -> None:
        control = await database_sync_to_async(operations.control_channel_of)(self.endpoint.device_id)
        if control:
            await get_channel_layer().send(control, {"type": "control.send", "line": self.connect_line})

    async def _event(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "relay.join" and self.port is not None:
            self.side.attach(self.port.connect(message["channel"]))
        elif kind == "operation.failed" and not self.failure.done():
            self.failure.set_result(message.get("reason") or "the device reported a failure")
        elif kind == "device.online" and not self.side.joined.is_set():
            await self._ask_device()
        elif kind == revocation.REVOKED:
            await self.side.end(Closed(message.get("reason") or revocation.REASON, revocation.CLOSE_CODE))
