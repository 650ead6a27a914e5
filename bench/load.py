"""`python -m bench.load --sessions 200 --seconds 300`: many SSH terminal
sessions through one gateway worker and the real agent for minutes, each
typing random data into `cat` on a raw tty now and then and checking that
exactly that came back.

Prints figures every --report-every seconds and at the end: sessions held,
bytes each way, errors with their first messages, echo p50/p99, the
gateway's RSS and open descriptors; then closes every session and checks
that the audit recorded the end of each. Writes JSON and a PNG chart.
"""

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from asgiref.sync import sync_to_async

from bench.audit import audit_after_close
from bench.cli import add_out, add_server, new_parser, positive, publish
from bench.crowd import Errors, close_all, open_all
from bench.paths import percentile
from bench.proc import open_fds, raise_fd_limit, rss_kib
from bench.report import now, run_record
from bench.scale_chart import write_load_chart
from bench.ssh_site import TerminalSite, terminal_site
from bench.terminal_page import TerminalPage, open_checked_page, type_after_pause
from bench.verdicts import Row, format_rows, goals
from bench.world import running_world

AUDIT_TIMEOUT = 120
SAMPLE_EVERY = 1.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser("load", __doc__)
    parser.add_argument("--sessions", type=positive, default=200, help="terminal sessions (default 200, at most 1000)")
    parser.add_argument("--seconds", type=positive, default=300, help="how long they type (default 300, at most 3600)")
    parser.add_argument("--report-every", type=positive, default=30, metavar="SECONDS",
                        help="print figures this often (default 30)")
    parser.add_argument("--typing-interval", type=float, default=1.0, metavar="SECONDS",
                        help="mean pause between one session's echoes (default 1.0)")
    parser.add_argument("--concurrency", type=positive, default=20, help="sessions opening at once (default 20)")
    parser.add_argument("--open-timeout", type=positive, default=60, metavar="SECONDS",
                        help="deadline to open and check one session (default 60)")
    add_server(parser)
    add_out(parser, "load")
    args = parser.parse_args(argv)
    if args.sessions > 1000 or args.seconds > 3600 or not 0 <= args.typing_interval <= 60:
        parser.error("at most 1000 sessions and 3600 s; --typing-interval takes 0 to 60 s")
    return args


def milliseconds(times: list[float], fraction: float) -> float:
    return percentile(times, fraction) * 1000 if times else float("nan")


class Tally:
    """What the sessions did, overall and since the last report."""

    def __init__(self, pages: list[TerminalPage], errors: Errors) -> None:
        self.pages = pages
        self.held = set(pages)
        self.errors = errors
        self.times: list[float] = []
        self.interval_times: list[float] = []

    def echoed(self, seconds: float) -> None:
        self.times.append(seconds)
        self.interval_times.append(seconds)

    def failed(self, page: TerminalPage, exc: BaseException) -> None:
        self.errors.add(f"operation {page.operation_id}", exc)
        self.held.discard(page)

    def bytes_sent(self) -> int:
        return sum(page.bytes_sent for page in self.pages)

    def bytes_received(self) -> int:
        return sum(page.bytes_received for page in self.pages)


class Gauge:
    """The gateway's RSS and descriptors: first, highest and last seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start_kib = self.peak_kib = self.last_kib = rss_kib(pid)
        self.start_fds = self.peak_fds = self.last_fds = open_fds(pid)

    def read(self) -> None:
        self.last_kib, self.last_fds = rss_kib(self.pid), open_fds(self.pid)
        self.peak_kib = max(self.peak_kib, self.last_kib)
        self.peak_fds = max(self.peak_fds, self.last_fds)

    def figures(self) -> dict[str, int]:
        return {"rss_start_kib": self.start_kib, "rss_peak_kib": self.peak_kib, "rss_end_kib": self.last_kib,
                "fds_start": self.start_fds, "fds_peak": self.peak_fds, "fds_end": self.last_fds}


async def typist(page: TerminalPage, tally: Tally, deadline: float, interval: float) -> None:
    while time.monotonic() < deadline:
        try:
            tally.echoed(await type_after_pause(page, interval))
        # Any failure is a figure of the run; this session stops typing.
        except Exception as exc:
            tally.failed(page, exc)
            return


def interval_row(started: float, tally: Tally, gauge: Gauge) -> dict:
    row = {
        "seconds": round(time.monotonic() - started),
        "held": len(tally.held),
        "echoes": len(tally.interval_times),
        "bytes_sent": tally.bytes_sent(),
        "bytes_received": tally.bytes_received(),
        "errors": tally.errors.count,
        "echo_p50_ms": milliseconds(tally.interval_times, 0.5),
        "echo_p99_ms": milliseconds(tally.interval_times, 0.99),
        "rss_kib": gauge.last_kib,
        "fds": gauge.last_fds,
    }
    tally.interval_times = []
    return row


def print_interval(row: dict) -> None:
    print(f"{row['seconds']:>6} s  held {row['held']:>4}  echoes {row['echoes']:>6}  "
          f"sent {row['bytes_sent']:>9} B  received {row['bytes_received']:>9} B  errors {row['errors']:>3}  "
          f"echo p50 {row['echo_p50_ms']:7.1f} ms  p99 {row['echo_p99_ms']:7.1f} ms  "
          f"RSS {row['rss_kib'] / 1024:6.1f} MiB  fds {row['fds']:>5}", flush=True)


async def watch(tally: Tally, gauge: Gauge, started: float, deadline: float, every: float) -> list[dict]:
    """Sample the gateway each second and report each interval, until the deadline."""
    intervals = []
    next_report = started + every
    while (moment := time.monotonic()) < deadline:
        await asyncio.sleep(min(SAMPLE_EVERY, deadline - moment))
        gauge.read()
        if time.monotonic() >= next_report:
            next_report += every
            intervals.append(interval_row(started, tally, gauge))
            print_interval(intervals[-1])
    return intervals


async def run(pid: int, site: TerminalSite, args: argparse.Namespace) -> dict:
    errors = Errors()
    warm_up = await asyncio.wait_for(open_checked_page(site), args.open_timeout)
    await warm_up.close()
    gauge = Gauge(pid)
    opening = time.monotonic()
    pages = await open_all(lambda: open_checked_page(site), args.sessions, args.concurrency, args.open_timeout,
                           errors)
    gauge.read()
    print(f"opened {len(pages)}/{args.sessions} sessions in {time.monotonic() - opening:.0f} s; "
          f"gateway RSS {gauge.last_kib / 1024:.1f} MiB, {gauge.last_fds} fds", flush=True)
    tally = Tally(pages, errors)
    started = time.monotonic()
    deadline = started + args.seconds
    typists = [asyncio.create_task(typist(page, tally, deadline, args.typing_interval)) for page in pages]
    intervals = await watch(tally, gauge, started, deadline, args.report_every)
    # Each typist ends within a pause and an echo timeout of the deadline.
    await asyncio.gather(*typists)
    if tally.interval_times:
        gauge.read()
        intervals.append(interval_row(started, tally, gauge))
        print_interval(intervals[-1])
    held_at_end = len(tally.held)
    await close_all(pages, args.concurrency, errors)
    audit = await sync_to_async(audit_after_close)(AUDIT_TIMEOUT)
    gauge.read()
    return {
        "opened": len(pages), "held_at_end": held_at_end, "echoes": len(tally.times),
        "bytes_sent": tally.bytes_sent(), "bytes_received": tally.bytes_received(),
        "echo_p50_ms": statistics.median(tally.times) * 1000 if tally.times else float("nan"),
        "echo_p99_ms": milliseconds(tally.times, 0.99),
        "errors": errors.count, "first_errors": errors.first, **gauge.figures(), "audit": audit,
        "intervals": intervals,
    }


def rows_of(result: dict) -> list[Row]:
    n = result["settings"]["sessions"]
    audit = result["audit"]
    return [
        Row("sessions opened and echoed", f"{result['opened']}/{n}", f"{n}/{n}", result["opened"] == n),
        Row(f"sessions held to the end ({result['settings']['seconds']} s)", f"{result['held_at_end']}/{n}",
            f"{n}/{n}", result["held_at_end"] == n),
        Row("echoes checked", str(result["echoes"])),
        Row("bytes typed / received", f"{result['bytes_sent']} / {result['bytes_received']}"),
        Row("echo p50 / p99 (ms)", f"{result['echo_p50_ms']:.1f} / {result['echo_p99_ms']:.1f}"),
        Row("gateway RSS start / peak / end (MiB)",
            f"{result['rss_start_kib'] / 1024:.1f} / {result['rss_peak_kib'] / 1024:.1f} / "
            f"{result['rss_end_kib'] / 1024:.1f}"),
        Row("gateway fds start / peak / end", f"{result['fds_start']} / {result['fds_peak']} / {result['fds_end']}"),
        Row("errors", str(result["errors"]), "0", result["errors"] == 0),
        Row("operations ended after close", f"{audit['ended']}/{audit['operations']}", "all",
            audit["ended"] == audit["operations"]),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    fd_limit = raise_fd_limit()
    started = now()
    with ExitStack() as stack:
        site = stack.enter_context(running_world((args.server,))).sites[0]
        terminals = stack.enter_context(terminal_site(site, max_startups=4 * args.concurrency))
        figures = asyncio.run(run(site.pid, terminals, args))
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    result = run_record(started, settings, fd_limit=fd_limit, **figures)
    rows = rows_of(result)
    result["goals"] = goals(rows)
    table = "\n" + format_rows(f"{args.sessions} SSH terminals on one {args.server} worker, {os.cpu_count()} CPUs",
                               rows)
    if result["first_errors"]:
        table += "\n\nfirst errors:\n" + "\n".join(result["first_errors"])
    publish(result, args.out, write_load_chart, table)


if __name__ == "__main__":
    main()
