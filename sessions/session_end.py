"""Writing the end of a session into its audit record so that neither a busy
database nor the server giving up on a closed connection loses it.

daphne cancels an application that is still running 10 s after its
WebSocket closed (its application_close_timeout), and a locked database can
hold the write for longer (SQLite waits out its timeout, operations.end
retries): the write therefore runs in a task of its own, which the
session's cancellation does not reach.
"""

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async

from sessions import operations

log = logging.getLogger(__name__)

# Writes still running, held so that they are not garbage-collected once the
# session that started them has been cancelled.
_writing: set["asyncio.Task[None]"] = set()


async def record_end(operation_id: int, **fields: Any) -> None:
    """operations.end(operation_id, **fields), carried to its end even when
    the caller is cancelled."""
    task = asyncio.create_task(_write(operation_id, fields))
    _writing.add(task)
    task.add_done_callback(_writing.discard)
    await asyncio.shield(task)


async def _write(operation_id: int, fields: dict[str, Any]) -> None:
    try:
        await database_sync_to_async(operations.end)(operation_id, **fields)
    except Exception:
        log.exception("operation %s: the end of the session could not be recorded", operation_id)
