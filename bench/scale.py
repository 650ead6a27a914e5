"""`python -m bench.scale`: many sessions on one gateway worker.

1. Idle passthrough sessions (a local proxy's WebSocket → gateway → device
   tunnel → the real agent → the echo target): the gateway's resident memory
   per session, each session checked by an echo before and after the hold.
2. Idle terminal sessions (page WebSocket → SSH bridge → sshd), the same way.
3. The same terminal sessions active at once, each typing random data into
   `cat` on a raw tty and checking that exactly that came back.

Each part (1, then 2 and 3) runs on a gateway of its own. Prints figures
beside their goals and writes JSON and a PNG chart.
"""

import argparse
import asyncio
import multiprocessing
import os
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from asgiref.sync import sync_to_async

from bench.audit import audit_after_close
from bench.cli import add_out, add_server, new_parser, positive, publish
from bench.crowd import Errors, close_all, open_all
from bench.paths import WebSocketPipe, open_websocket, percentile
from bench.proc import open_fds, raise_fd_limit, rss_kib
from bench.report import now, run_record
from bench.scale_chart import write_scale_chart
from bench.ssh_site import TerminalSite, terminal_site
from bench.terminal_page import ECHO_TIMEOUT, TerminalPage, open_checked_page, type_after_pause
from bench.verdicts import Row, format_rows, goals
from bench.world import Site, running_world

KIB_PER_SESSION_GOAL = 40
AUDIT_TIMEOUT = 60


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser("scale", __doc__)
    parser.add_argument("--sessions", type=int, default=500, metavar="N",
                        help="idle passthrough sessions (default 500; 0 skips them)")
    parser.add_argument("--terminals", type=int, default=100, metavar="N",
                        help="terminal sessions, idle then active (default 100; 0 skips them)")
    parser.add_argument("--rounds", type=positive, default=30,
                        help="echoes each active terminal checks (default 30)")
    parser.add_argument("--typing-interval", type=float, default=0.2, metavar="SECONDS",
                        help="mean pause between one terminal's echoes (default 0.2)")
    parser.add_argument("--idle-seconds", type=float, default=30, metavar="SECONDS",
                        help="how long the sessions are held idle before memory is read (default 30)")
    parser.add_argument("--concurrency", type=positive, default=20, help="sessions opening at once (default 20)")
    parser.add_argument("--open-timeout", type=positive, default=60, metavar="SECONDS",
                        help="deadline to open and check one session (default 60)")
    add_server(parser)
    add_out(parser, "scale")
    args = parser.parse_args(argv)
    if not 0 <= args.sessions <= 5000 or not 0 <= args.terminals <= 1000:
        parser.error("--sessions takes 0 to 5000, --terminals 0 to 1000")
    if not 0 <= args.typing_interval <= 10 or not 0 <= args.idle_seconds <= 3600:
        parser.error("--typing-interval takes 0 to 10 s, --idle-seconds 0 to 3600 s")
    return args


async def echo_once(pipe: WebSocketPipe) -> None:
    data = os.urandom(16)
    await pipe.send(data)
    back = b""
    while len(back) < len(data):
        back += await pipe.recv()
    if back != data:
        raise ValueError(f"sent {data!r}, the echo was {back!r:.80}")


async def still_echo(pipes: Sequence[WebSocketPipe], concurrency: int, errors: Errors) -> int:
    """How many of the sessions still echo, each within ECHO_TIMEOUT."""
    gate = asyncio.Semaphore(concurrency)

    async def one(pipe: WebSocketPipe) -> bool:
        async with gate:
            try:
                async with asyncio.timeout(ECHO_TIMEOUT):
                    await echo_once(pipe)
                return True
            # Any failure is a figure of the run, not a reason to stop it.
            except Exception as exc:
                errors.add("echo after the idle hold", exc)
                return False

    return sum(await asyncio.gather(*(one(pipe) for pipe in pipes)))


async def hold_idle(seconds: float) -> None:
    # Idle is the state being measured: nothing to wait for but time.
    await asyncio.sleep(seconds)


def memory(pid: int, base_kib: int, held_kib: int, sessions: int) -> dict[str, float]:
    return {
        "base_kib": base_kib,
        "held_kib": held_kib,
        "kib_per_session": (held_kib - base_kib) / sessions if sessions else float("nan"),
        "fds_held": open_fds(pid),
    }


async def passthrough_phase(site: Site, token: str, args: argparse.Namespace) -> dict:
    errors = Errors()
    pid = site.pid

    async def open_one() -> WebSocketPipe:
        pipe = await open_websocket(site.client_url(), {"Authorization": f"Bearer {token}"})
        try:
            await echo_once(pipe)
        except BaseException:
            await pipe.close()
            raise
        return pipe

    # The first session loads the code and fills the caches all share.
    warm_up = await asyncio.wait_for(open_one(), args.open_timeout)
    await warm_up.close()
    base = rss_kib(pid)
    pipes = await open_all(open_one, args.sessions, args.concurrency, args.open_timeout, errors)
    opened_kib = rss_kib(pid)
    await hold_idle(args.idle_seconds)
    held = memory(pid, base, rss_kib(pid), len(pipes))
    alive = await still_echo(pipes, args.concurrency, errors)
    await close_all(pipes, args.concurrency, errors)
    audit = await sync_to_async(audit_after_close)(AUDIT_TIMEOUT)
    return {"sessions": args.sessions, "opened": len(pipes), "alive_after_idle": alive, "opened_kib": opened_kib,
            **held, "closed_kib": rss_kib(pid), "errors": errors.count, "first_errors": errors.first,
            "audit": audit}


async def type_rounds(page: TerminalPage, rounds: int, interval: float) -> list[float]:
    return [await type_after_pause(page, interval) for _ in range(rounds)]


async def terminal_phase(pid: int, site: TerminalSite, args: argparse.Namespace) -> dict:
    errors = Errors()
    warm_up = await asyncio.wait_for(open_checked_page(site), args.open_timeout)
    await warm_up.close()
    base = rss_kib(pid)
    pages = await open_all(lambda: open_checked_page(site), args.terminals, args.concurrency, args.open_timeout,
                           errors)
    await hold_idle(args.idle_seconds)
    held = memory(pid, base, rss_kib(pid), len(pages))

    outcomes = await asyncio.gather(*(type_rounds(page, args.rounds, args.typing_interval) for page in pages),
                                    return_exceptions=True)
    times: list[float] = []
    correct = 0
    for page, outcome in zip(pages, outcomes):
        if isinstance(outcome, BaseException):
            errors.add(f"typing in operation {page.operation_id}", outcome)
        else:
            correct += 1
            times += outcome
    active_kib = rss_kib(pid)
    await close_all(pages, args.concurrency, errors)
    audit = await sync_to_async(audit_after_close)(AUDIT_TIMEOUT)
    return {
        "sessions": args.terminals, "opened": len(pages), **held, "active_kib": active_kib,
        "correct": correct, "echoes": len(times),
        "echo_p50_ms": statistics.median(times) * 1000 if times else float("nan"),
        "echo_p99_ms": percentile(times, 0.99) * 1000 if times else float("nan"),
        "closed_kib": rss_kib(pid), "errors": errors.count, "first_errors": errors.first, "audit": audit,
    }


def ended(audit: dict) -> bool:
    return audit["ended"] == audit["operations"]


def rows_of(result: dict) -> list[Row]:
    rows = []
    passthrough, terminal = result.get("passthrough"), result.get("terminal")
    if passthrough:
        n = passthrough["sessions"]
        rows += [
            Row("passthrough sessions, idle", ""),
            Row("  opened and echoed", f"{passthrough['opened']}/{n}", f"{n}/{n}", passthrough["opened"] == n),
            Row(f"  still echo after {result['settings']['idle_seconds']:g} s idle",
                f"{passthrough['alive_after_idle']}/{n}", f"{n}/{n}", passthrough["alive_after_idle"] == n),
            Row("  gateway RSS base -> held (MiB)",
                f"{passthrough['base_kib'] / 1024:.1f} -> {passthrough['held_kib'] / 1024:.1f}"),
            Row("  gateway RSS per idle session", f"{passthrough['kib_per_session']:.1f} KiB",
                f"<= {KIB_PER_SESSION_GOAL} KiB", passthrough["kib_per_session"] <= KIB_PER_SESSION_GOAL),
            Row("  gateway fds held", str(passthrough["fds_held"])),
            Row("  gateway RSS after all closed (MiB)", f"{passthrough['closed_kib'] / 1024:.1f}"),
            Row("  operations ended after close",
                f"{passthrough['audit']['ended']}/{passthrough['audit']['operations']}", "all",
                ended(passthrough["audit"])),
            Row("  errors", str(passthrough["errors"])),
        ]
    if terminal:
        n = terminal["sessions"]
        rows += [
            Row("terminal sessions (SSH), idle then active", ""),
            Row("  opened and echoed", f"{terminal['opened']}/{n}", f"{n}/{n}", terminal["opened"] == n),
            Row("  gateway RSS base -> held (MiB)",
                f"{terminal['base_kib'] / 1024:.1f} -> {terminal['held_kib'] / 1024:.1f}"),
            Row("  gateway RSS per idle session", f"{terminal['kib_per_session']:.1f} KiB"),
            Row("  gateway fds held", str(terminal["fds_held"])),
            Row("  active sessions correct", f"{terminal['correct']}/{n}", f"{n}/{n}", terminal["correct"] == n),
            Row("  echoes checked", str(terminal["echoes"])),
            Row("  echo p50 / p99 (ms)", f"{terminal['echo_p50_ms']:.1f} / {terminal['echo_p99_ms']:.1f}"),
            Row("  gateway RSS active, after all closed (MiB)",
                f"{terminal['active_kib'] / 1024:.1f}, {terminal['closed_kib'] / 1024:.1f}"),
            Row("  operations ended after close",
                f"{terminal['audit']['ended']}/{terminal['audit']['operations']}", "all", ended(terminal["audit"])),
            Row("  errors", str(terminal["errors"])),
        ]
    return rows


def errors_text(result: dict) -> str:
    lines = []
    for phase in ("passthrough", "terminal"):
        for message in (result.get(phase) or {}).get("first_errors", []):
            lines.append(f"{phase}: {message}")
    return "\n".join(lines)


def run_phase(phase: str, args: argparse.Namespace) -> dict:
    """One phase on a world of its own. Runs in a fresh interpreter: the
    memory one phase's sessions freed would make the next phase's look
    smaller, and Django is set up once per process."""
    with ExitStack() as stack:
        world = stack.enter_context(running_world((args.server,)))
        site = world.sites[0]
        if phase == "passthrough":
            return asyncio.run(passthrough_phase(site, world.token, args))
        terminals = stack.enter_context(terminal_site(site, max_startups=4 * args.concurrency))
        return asyncio.run(terminal_phase(site.pid, terminals, args))


def run_phases(args: argparse.Namespace) -> dict:
    phases = [name for name, count in (("passthrough", args.sessions), ("terminal", args.terminals)) if count]
    results = {}
    for phase in phases:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            results[phase] = pool.submit(run_phase, phase, args).result()
    return results


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    fd_limit = raise_fd_limit()
    started = now()
    phases = run_phases(args)
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    result = run_record(started, settings, fd_limit=fd_limit, kib_per_session_goal=KIB_PER_SESSION_GOAL, **phases)
    rows = rows_of(result)
    result["goals"] = goals(rows)
    table = format_rows(f"one {args.server} worker, {os.cpu_count()} CPUs", rows)
    if errors := errors_text(result):
        table += "\n\nfirst errors:\n" + errors
    publish(result, args.out, write_scale_chart, table)


if __name__ == "__main__":
    main()
