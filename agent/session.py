"""One connect request, from the ``530`` line to the end of its forwarding.

Reports its progress as SmartREST lines through ``report`` (the control
channel's outbox), so a session outlives control channel reconnects: it
holds no reference to the control WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus, WebSocketException

from agent import smartrest
from agent.allowlist import AllowList
from agent.smartrest import ConnectRequest
from agent.target import CONNECT_TIMEOUT, ResolvedTarget, TargetError, connect_target, resolve_allowed
from agent.transport import ServerLink
from agent.tunnel import TargetWording, close_both, forward

logger = logging.getLogger(__name__)

TUNNEL_SUBPROTOCOL = "binary"
TUNNEL_MAX_SIZE = 2**20


class TunnelError(Exception):
    """The tunnel WebSocket could not be opened; ``reason`` is for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def open_tunnel(link: ServerLink, connection_key: str) -> ClientConnection:
    try:
        return await link.connect(
            link.tunnel_url(connection_key),
            subprotocols=[TUNNEL_SUBPROTOCOL],
            max_size=TUNNEL_MAX_SIZE,
        )
    except InvalidStatus as exc:
        raise TunnelError(f"tunnel refused by the server (HTTP {exc.response.status_code})") from None
    except TimeoutError:
        raise TunnelError("timed out opening the tunnel to the server") from None
    except (OSError, WebSocketException) as exc:
        raise TunnelError(f"cannot open the tunnel to the server: {exc}") from None


async def open_both(
    target: ResolvedTarget,
    link: ServerLink,
    connection_key: str,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> tuple[ClientConnection, asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the TCP target and the tunnel at once; on any failure close whichever opened.

    Done concurrently because the connection key expires: a slow target must
    not eat the tunnel's time, and each side's latency is paid only once.
    """
    tcp = asyncio.create_task(connect_target(target, connect_timeout))
    tunnel = asyncio.create_task(open_tunnel(link, connection_key))
    try:
        await asyncio.wait({tcp, tunnel}, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        failed = [t for t in (tcp, tunnel) if t.done() and not t.cancelled() and t.exception() is not None]
        if failed or not (tcp.done() and tunnel.done()):
            # Either a failure or our own cancellation: undo whatever opened.
            for task in (tcp, tunnel):
                task.cancel()
            await asyncio.gather(tcp, tunnel, return_exceptions=True)
            ws = tunnel.result() if _succeeded(tunnel) else None
            writer = tcp.result()[1] if _succeeded(tcp) else None
            await close_both(ws, writer)
    if failed:
        # The target's reason first: it is the one a user can act on.
        raise failed[0].exception()  # type: ignore[misc]
    reader, writer = tcp.result()
    return tunnel.result(), reader, writer


def _succeeded(task: asyncio.Task) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


async def run_session(
    request: ConnectRequest,
    link: ServerLink,
    allow: AllowList,
    report: Callable[[str], None],
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Serve one connect request: report executing, connect, report the outcome, forward."""
    op = request.operation_id
    name = f"operation {op}" if op is not None else "connect request"
    where = f"{request.hostname}:{request.port}"
    report(smartrest.executing(op))
    try:
        target = await resolve_allowed(request.hostname, request.port, allow)
        ws, reader, writer = await open_both(target, link, request.connection_key, connect_timeout)
    except (TargetError, TunnelError) as exc:
        logger.warning("%s to %s failed: %s", name, where, exc.reason)
        report(smartrest.failed(op, exc.reason))
        return
    report(smartrest.successful(op))
    logger.info("%s: forwarding %s", name, where)
    try:
        stats = await forward(ws, reader, writer, TargetWording())
    except asyncio.CancelledError:
        logger.info("%s to %s stopped: the agent is shutting down", name, where)
        raise
    logger.info(
        "%s to %s ended, %s: %d bytes to the target, %d bytes from it",
        name,
        where,
        stats.ended_by,
        stats.to_local,
        stats.from_local,
    )
