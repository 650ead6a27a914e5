"""Which server process holds a session's client side, so that a restarted
process can close the audit of the sessions it held when it stopped."""

from django.db.models import Q
from django.utils import timezone

from sessions.models import Operation, Status

SERVER_RESTARTED = "server restarted"

# Set by `manage.py serve`: host name and port, the same across restarts.
name = ""


def close_sessions_left_open(worker: str) -> int:
    """End the operations this worker held when it last stopped; the number."""
    if not worker:
        return 0
    now = timezone.now()
    held = Operation.objects.filter(worker=worker, ended__isnull=True)
    failed = held.filter(Q(status=Status.PENDING) | Q(status=Status.EXECUTING)).update(
        status=Status.FAILED, failure_reason=SERVER_RESTARTED, end_reason=SERVER_RESTARTED, ended=now, updated=now
    )
    ended = held.update(end_reason=SERVER_RESTARTED, ended=now, updated=now)
    return failed + ended
