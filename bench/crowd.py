"""Many sessions at once: opened with bounded concurrency and a deadline
each, closed the same way, and the errors they met, counted with the first
messages."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
KEEP_MESSAGES = 5
CLOSE_TIMEOUT = 15


class Closable(Protocol):
    async def close(self) -> None: ...


class Errors:
    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []

    def add(self, where: str, exc: BaseException) -> None:
        self.count += 1
        if len(self.first) < KEEP_MESSAGES:
            self.first.append(f"{where}: {type(exc).__name__}: {exc}"[:300])


async def open_all(
    open_one: Callable[[], Awaitable[T]], count: int, concurrency: int, timeout: float, errors: Errors
) -> list[T]:
    """The sessions that opened; each failure is counted in errors."""
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int) -> T | None:
        async with gate:
            try:
                async with asyncio.timeout(timeout):
                    return await open_one()
            # Any failure is a figure of the run, not a reason to stop it.
            except Exception as exc:
                errors.add(f"opening session {number}", exc)
                return None

    opened = await asyncio.gather(*(one(number) for number in range(count)))
    return [session for session in opened if session is not None]


async def close_all(sessions: Sequence[Closable], concurrency: int, errors: Errors) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(session: Closable) -> None:
        async with gate:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await session.close()
            except Exception as exc:
                errors.add("closing a session", exc)

    await asyncio.gather(*(one(session) for session in sessions))
