"""The control channel: one long-lived WebSocket on which the server asks for sessions.

The agent keeps it open for as long as it runs and reconnects after any
failure with exponential back-off, except when the server refuses the
device's credentials (retrying cannot fix that). Sessions are tasks of the
agent, not of a channel: a reconnect leaves live tunnels alone, and status
lines written while the channel is down wait in the outbox for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from agent import smartrest
from agent.config import AgentConfig
from agent.session import run_session
from agent.smartrest import SmartRestError
from agent.target import CONNECT_TIMEOUT
from agent.transport import ServerLink

logger = logging.getLogger(__name__)

STABLE_AFTER = 10.0
OUTBOX_LIMIT = 1000
RECENT_KEYS = 256
SHUTDOWN_TIMEOUT = 10.0


class CredentialsRefused(Exception):
    """The server refused the control channel (401 or 403): the device must register again."""


class Backoff:
    """Delays between reconnects: ``initial`` doubling up to ``maximum``, with jitter.

    The jitter (each delay drawn from its upper ``jitter`` fraction) keeps a
    fleet of devices from reconnecting in lockstep after a server restart.
    """

    def __init__(
        self,
        initial: float = 1.0,
        maximum: float = 60.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.rng = rng
        self.attempt = 0

    def next(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self.attempt)
        if base < self.maximum:
            self.attempt += 1
        return base * (1.0 - self.jitter * self.rng())

    def reset(self) -> None:
        self.attempt = 0


class Outbox:
    """SmartREST lines waiting for a control channel, oldest first.

    A line leaves only once it was handed to a connection, so a status
    reported during a reconnect is delivered on the next channel.
    """

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._lines: deque[str] = deque()
        self._ready = asyncio.Event()
        self.limit = limit

    def __len__(self) -> int:
        return len(self._lines)

    def put(self, line: str) -> None:
        if len(self._lines) >= self.limit:
            # Only after a very long outage; the oldest reports are the stalest.
            dropped = self._lines.popleft()
            logger.warning("outbox full, dropping status line %r", dropped)
        self._lines.append(line)
        self._ready.set()

    async def first(self) -> str:
        while not self._lines:
            self._ready.clear()
            await self._ready.wait()
        return self._lines[0]

    def pop(self) -> None:
        self._lines.popleft()


class Agent:
    """The running agent: the control channel loop and the sessions it starts."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backoff: Backoff | None = None,
        stable_after: float = STABLE_AFTER,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.link = ServerLink(
            server=config.server,
            username=config.username,
            password=config.password,
            ssl_context=ssl_context,
            ping_interval=config.ping_interval,
        )
        self.device_id = config.device_id
        self.allow = config.allow_list()
        self.backoff = backoff or Backoff()
        self.stable_after = stable_after
        self.connect_timeout = connect_timeout
        self.outbox = Outbox()
        self.sessions: set[asyncio.Task[None]] = set()
        self._recent_keys: deque[str] = deque(maxlen=RECENT_KEYS)
        self._stop = asyncio.Event()
        self._connected_at: float | None = None

    def stop(self) -> None:
        """Ask :meth:`run` to return; safe to call from a signal handler."""
        self._stop.set()

    def report(self, line: str) -> None:
        self.outbox.put(line)

    async def run(self) -> None:
        """Serve until :meth:`stop`; raise :class:`CredentialsRefused` on HTTP 401 or 403."""
        if not self.allow.allows_all:
            logger.info("allow-list: %s", ", ".join(e.text for e in self.allow.entries))
        else:
            logger.info("allow-list is empty: every target on the device's network is allowed")
        try:
            await self._control_loop()
        finally:
            await self._stop_sessions()

    async def _control_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            self._connected_at = None
            attempt = asyncio.create_task(self._connect_and_serve())
            stopper = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({attempt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if not attempt.done():
                    attempt.cancel()
                    await asyncio.gather(attempt, return_exceptions=True)
            if self._stop.is_set():
                return

            reason = self._retry_reason(attempt)
            if self._connected_at is not None and loop.time() - self._connected_at >= self.stable_after:
                self.backoff.reset()
            delay = self.backoff.next()
            logger.warning("control channel: %s; reconnecting in %.1f s", reason, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass

    def _retry_reason(self, attempt: asyncio.Task[str]) -> str:
        """Why the channel ended, for the retry log; raises when a retry cannot help."""
        if attempt.cancelled():
            return "cancelled"
        exc = attempt.exception()
        if exc is None:
            return attempt.result()
        if isinstance(exc, InvalidStatus):
            # The control channel has no reason to refuse a device but its
            # credentials; servers that cannot answer 401 to an upgrade
            # (daphne) answer 403.
            if exc.response.status_code in (401, 403):
                raise CredentialsRefused("the device's credentials were refused: register again")
            return f"the server answered HTTP {exc.response.status_code}"
        if isinstance(exc, ConnectionClosed):
            return f"connection lost ({exc})"
        if isinstance(exc, TimeoutError):
            return "timed out connecting to the server"
        if isinstance(exc, (OSError, WebSocketException)):
            return f"cannot connect to {self.link.server}: {exc}"
        # A bug must not leave a device unreachable for good: log it and retry.
        logger.error("control channel failed", exc_info=exc)
        return f"unexpected error {exc!r}"

    async def _connect_and_serve(self) -> str:
        url = self.link.control_url
        ws = await self.link.connect(url)
        close_code = 1000
        try:
            self._connected_at = asyncio.get_running_loop().time()
            logger.info("control channel connected to %s", url)
            await self._serve(ws)
        except asyncio.CancelledError:
            # Stopping: "going away" tells the server this is no error.
            close_code = 1001
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(close_code), SHUTDOWN_TIMEOUT)
        code = ws.close_code
        return f"the server closed the channel (code {code})" if code is not None else "the channel closed"

    async def _serve(self, ws: ClientConnection) -> None:
        sender = asyncio.create_task(self._send_loop(ws))
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    logger.warning("ignoring a binary frame on the control channel")
                    continue
                self._handle_frame(message)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_loop(self, ws: ClientConnection) -> None:
        while True:
            line = await self.outbox.first()
            await ws.send(line)
            self.outbox.pop()
            logger.debug("sent %s", line)

    def _handle_frame(self, text: str) -> None:
        try:
            records = smartrest.parse_lines(text)
        except SmartRestError as exc:
            logger.warning("control channel: %s", exc)
            return
        for fields in records:
            code = fields[0].strip()
            if code == "530":
                self._start_session(fields)
            elif code == "ERR":
                logger.warning("the server refused a line: %s", ",".join(fields[1:]))
            else:
                logger.debug("ignoring SmartREST message %s", code)

    def _start_session(self, fields: list[str]) -> None:
        try:
            request = smartrest.parse_connect(fields)
        except SmartRestError as exc:
            logger.warning("invalid connect request: %s", exc)
            op = fields[5].strip() if len(fields) > 5 else ""
            # Without an operation id a failure line would fail whichever
            # operation is oldest, maybe another one: say nothing then.
            if op:
                self.report(smartrest.failed(op, f"invalid connect request: {exc}"))
            return
        if request.connection_key in self._recent_keys:
            # A key opens one tunnel only; a repeated request (e.g. re-sent
            # after a reconnect) would fail and mark a working session FAILED.
            logger.info("ignoring a repeated connect request for operation %s", request.operation_id)
            return
        self._recent_keys.append(request.connection_key)
        if request.serial != self.device_id:
            logger.debug("connect request names device %r, this is %r", request.serial, self.device_id)
        logger.info(
            "connect request%s to %s:%d",
            f" (operation {request.operation_id})" if request.operation_id else "",
            request.hostname,
            request.port,
        )
        task = asyncio.create_task(self._session(request))
        self.sessions.add(task)
        task.add_done_callback(self.sessions.discard)

    async def _session(self, request: smartrest.ConnectRequest) -> None:
        try:
            await run_session(request, self.link, self.allow, self.report, self.connect_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("session for operation %s failed", request.operation_id)
            if request.operation_id is not None:
                self.report(smartrest.failed(request.operation_id, f"agent error: {exc!r}"))

    async def _stop_sessions(self) -> None:
        tasks = list(self.sessions)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT)
