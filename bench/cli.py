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
