"""`python -m bench`: start the world on loopback, measure every path round
by round, print the table and write the JSON record."""

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.paths import MIB, run_rounds
from bench.chart import write_chart
from bench.report import format_table, record, write_json
from bench.world import running_world

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", type=positive, default=50, metavar="MIB",
                        help="MiB sent each way per throughput measurement (default 50)")
    parser.add_argument("--rounds", type=positive, default=5, help="rounds over all paths (default 5)")
    parser.add_argument("--echo-count", type=positive, default=500, metavar="N",
                        help="1-byte round trips per echo measurement (default 500)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    return parser.parse_args(argv)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = now()
    with running_world() as world:
        samples = asyncio.run(run_rounds(world, args.rounds, args.size * MIB, args.echo_count))
    settings = {"size_mib": args.size, "rounds": args.rounds, "echo_count": args.echo_count}
    result = record(samples, settings, started, now())
    write_json(result, args.out)
    chart = args.out.with_suffix(".png")
    write_chart(result, chart)
    print(format_table(result))
    print(f"\nwritten to {args.out} and {chart}")


if __name__ == "__main__":
    main()
