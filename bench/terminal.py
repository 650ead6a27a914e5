"""`python -m bench.terminal`: an SSH terminal on the browser page, through
the gateway's SSH bridge and the agent, against a direct asyncssh PTY session
to the same sshd: keystroke echo, `cat` output, and Connect to the prompt.
Prints the table with its goals and writes bench/results/terminal.json and
terminal.png."""

import argparse
import asyncio
import logging
from collections.abc import Sequence

from bench.cli import add_out, new_parser, positive, publish
from bench.report import now
from bench.terminal_measures import TerminalSample, run_rounds
from bench.terminal_paths import Browser, terminal_paths
from bench.terminal_report import format_table, record, write_chart
from bench.terminal_world import TerminalWorld, running_terminal_world


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser("terminal", __doc__)
    parser.add_argument("--size", type=positive, default=100, metavar="MIB",
                        help="MiB of the file that cat prints (default 100)")
    parser.add_argument("--rounds", type=positive, default=5, help="rounds over both paths (default 5)")
    parser.add_argument("--echo-count", type=positive, default=500, metavar="N",
                        help="keystrokes timed per echo measurement (default 500)")
    parser.add_argument("--connect-count", type=positive, default=5, metavar="N",
                        help="sessions opened per round and path to time Connect to prompt (default 5)")
    add_out(parser, "terminal")
    return parser.parse_args(argv)


async def measure_all(world: TerminalWorld, args: argparse.Namespace) -> list[TerminalSample]:
    browser = Browser(world.gateway_url)
    await asyncio.to_thread(browser.log_in, world.username, world.password)
    return await run_rounds(terminal_paths(world, browser), world, args.rounds, args.echo_count,
                            args.connect_count)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # The direct sessions' lines at the embedded settings' INFO would bury the table.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    started = now()
    with running_terminal_world(args.size) as world:
        samples = asyncio.run(measure_all(world, args))
    settings = {"size_mib": args.size, "rounds": args.rounds, "echo_count": args.echo_count,
                "connect_count": args.connect_count}
    result = record(samples, settings, started)
    publish(result, args.out, write_chart, format_table(result))


if __name__ == "__main__":
    main()
