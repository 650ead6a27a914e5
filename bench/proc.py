"""What a process holds, read from /proc (Linux), and the descriptor limit
that hundreds of sessions need."""

import os
import resource

from bench.memory import KIB, rss


def rss_kib(pid: int) -> int:
    return rss(pid) // KIB


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit, for this process and every
    process it starts afterwards (they inherit it); returns the new limit.

    Each passthrough session holds two sockets in the gateway and two in the
    agent, so 500 of them pass the usual soft limit of 1024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft
