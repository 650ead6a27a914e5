"""The passthrough tunnel, whole path (client WebSocket → gateway → device
WebSocket → agent → TCP echo target and back), on each ASGI server, beside
plain TCP and websockify to the same target: throughput and 1-byte echoes,
round by round."""

import argparse
import asyncio
from collections.abc import Sequence

from bench import cli
from bench.chart import write_chart
from bench.paths import MIB, run_rounds
from bench.report import format_table, now, record
from bench.world import running_world

NAME = "passthrough"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.new_parser(NAME, __doc__)
    cli.add_transfers(parser, rounds=5, echo_count=500)
    cli.add_servers(parser)
    cli.add_out(parser, NAME)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = now()
    with running_world(args.servers) as world:
        samples = asyncio.run(run_rounds(world, args.rounds, args.size * MIB, args.echo_count))
    settings = {"size_mib": args.size, "rounds": args.rounds, "echo_count": args.echo_count}
    result = record(samples, settings, started)
    cli.publish(result, args.out, write_chart, format_table(result))
    return result


if __name__ == "__main__":
    main()
