"""Resident memory of a process, sampled while a measurement runs."""

import asyncio
from pathlib import Path

KIB = 1024
SAMPLE_EVERY = 0.02


def rss(pid: int) -> int:
    """Bytes resident now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KIB
    raise ValueError(f"no VmRSS for process {pid}")


class PeakSampler:
    """The highest RSS of a process seen between start and stop."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss(self.pid))
            await asyncio.sleep(SAMPLE_EVERY)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> int:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.peak = max(self.peak, rss(self.pid))
        return self.peak
