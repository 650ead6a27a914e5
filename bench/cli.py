"""What the benchmarks' command lines share."""

import argparse
from collections.abc import Callable
from pathlib import Path

from bench.report import write_json
from portal.asgi_servers import SERVERS

RESULTS = Path(__file__).resolve().parent / "results"


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def servers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SERVERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SERVERS)}")
    return names


def result_path(name: str) -> Path:
    return RESULTS / f"{name}.json"


def new_parser(name: str, description: str | None) -> argparse.ArgumentParser:
    # The suites' docstrings are their help, laid out as written.
    return argparse.ArgumentParser(prog=f"python -m bench {name}", description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_transfers(parser: argparse.ArgumentParser, *, rounds: int, echo_count: int) -> None:
    """Bulk transfers and 1-byte echoes over a byte path, round by round."""
    parser.add_argument("--size", type=positive, default=200, metavar="MIB",
                        help="MiB sent each way per throughput measurement (default 200)")
    parser.add_argument("--rounds", type=positive, default=rounds, help=f"rounds over all paths (default {rounds})")
    parser.add_argument("--echo-count", type=positive, default=echo_count, metavar="N",
                        help=f"1-byte round trips per echo measurement (default {echo_count})")


def add_servers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--servers", type=servers, default=SERVERS,
                        help=f"comma-separated ASGI servers (default {','.join(SERVERS)})")


def add_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", choices=SERVERS, default="uvicorn",
                        help="the gateway's ASGI server (default uvicorn, as `manage.py serve`)")


def add_out(parser: argparse.ArgumentParser, name: str) -> None:
    default = result_path(name)
    parser.add_argument("--out", type=Path, default=default, help=f"JSON results file (default {default})")


def publish(result: dict, out: Path, draw: Callable[[dict, Path], None], table: str) -> None:
    """Write the JSON and the chart beside it, then print the table."""
    write_json(result, out)
    chart = out.with_suffix(".png")
    draw(result, chart)
    print(table)
    print(f"\nwritten to {out} and {chart}")
