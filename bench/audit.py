"""The audit trail after a run: every session's operation must have ended."""

from collections import Counter

from tests.live import wait_until


def audit_summary() -> dict[str, object]:
    """This runs queries."""
    from sessions.models import Operation

    rows = list(Operation.objects.values_list("status", "ended"))
    return {
        "operations": len(rows),
        "ended": sum(1 for _, ended in rows if ended is not None),
        "by_status": dict(Counter(status for status, _ in rows)),
    }


def audit_after_close(timeout: float) -> dict[str, object]:
    """The summary once every operation has ended, or as it is when timeout
    runs out (the figures then show what was left open)."""
    from sessions.models import Operation

    try:
        wait_until(lambda: not Operation.objects.filter(ended__isnull=True).exists(), timeout,
                   "the end of every operation")
    except TimeoutError:
        pass
    return audit_summary()
