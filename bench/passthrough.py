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
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}", description=__doc__)
    parser.add_argument("--size", type=cli.positive, default=200, metavar="MIB",
                        help="MiB sent each way per throughput measurement (default 200)")
    parser.add_argument("--rounds", type=cli.positive, default=5, help="rounds over all paths (default 5)")
    parser.add_argument("--echo-count", type=cli.positive, default=500, metavar="N",
                        help="1-byte round trips per echo measurement (default 500)")
    cli.add_servers(parser)
    cli.add_out(parser, NAME)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = now()
    with running_world(args.servers) as world:
        samples = asyncio.run(run_rounds(world, args.rounds, args.size * MIB, args.echo_count))
    settings = {"size_mib": args.size, "rounds": args.rounds, "echo_count": args.echo_count}
    result = record(samples, settings, started, now())
    cli.publish(result, args.out, write_chart, format_table(result))
    return result


if __name__ == "__main__":
    main()
